"""The one name rule: keys up to case and spaces, a title's "(...)" qualifier."""

from gemel.text import name_key, without_qualifier


def test_name_key_folds_case_and_spaces():
    assert name_key("  New   York ") == name_key("new york") == "new york"
    assert name_key("STRASSE") == name_key("Straße")  # casefold, not lower


def test_without_qualifier_drops_only_a_trailing_qualifier():
    assert without_qualifier("Mole (animal)") == "Mole"
    assert without_qualifier("Mercury (planet) ") == "Mercury"
    assert without_qualifier("C (programming language)") == "C"
    assert without_qualifier("Star Wars (film) series") == "Star Wars (film) series"
    assert without_qualifier("(Untitled)") == "(Untitled)"
