"""The one name rule: keys up to case and spaces, a title's "(...)" qualifier, a plural as its singular, "the"
before a capitalised name."""

from gemel.text import match_key, name_forms, name_key, names_as_head, names_exactly, singular, without_qualifier


def test_name_key_folds_case_and_spaces():
    assert name_key("  New   York ") == name_key("new york") == "new york"
    assert name_key("STRASSE") == name_key("Straße")  # casefold, not lower


def test_without_qualifier_drops_only_a_trailing_qualifier():
    assert without_qualifier("Mole (animal)") == "Mole"
    assert without_qualifier("Mercury (planet) ") == "Mercury"
    assert without_qualifier("C (programming language)") == "C"
    assert without_qualifier("Star Wars (film) series") == "Star Wars (film) series"
    assert without_qualifier("(Untitled)") == "(Untitled)"


def test_singular_maps_a_plural_and_its_singular_to_one_word():
    pairs = [("galaxies", "galaxy"), ("birds", "bird"), ("grasses", "grass"), ("churches", "church"),
             ("boxes", "box"), ("horses", "horse"), ("countries", "country")]
    for plural, one in pairs:
        assert singular(plural) == singular(one) == one, plural
    for word in ("grass", "bus", "paris", "gas", "its", "cat"):  # "ss", "us", "is" endings, short words stay
        assert singular(word) == word


def test_irregular_plurals_find_their_singular_and_regular_ves_plurals_stay_regular():
    for plural, one in [("wolves", "wolf"), ("knives", "knife"), ("leaves", "leaf"), ("mice", "mouse"),
                        ("geese", "goose"), ("women", "woman")]:
        assert singular(plural) == singular(one) == one, plural
    for plural, one in [("waves", "wave"), ("olives", "olive"), ("gloves", "glove"), ("caves", "cave")]:
        assert singular(plural) == one, plural
    assert match_key("Grey Wolves") == match_key("grey wolf") == "grey wolf"


def test_match_key_makes_only_the_last_word_singular():
    assert match_key("  Tower   Blocks ") == match_key("tower block") == "tower block"
    assert match_key("Birds") == "bird" and match_key("") == ""
    assert match_key("States of Germany") == "states of germany"  # the head of "X of Y" is not its last word


def test_the_before_a_capitalised_name_is_not_part_of_the_name():
    assert name_forms("the Moon") == ("the Moon", "Moon") and name_forms("The  Hague") == ("The  Hague", "Hague")
    assert names_exactly("the Moon", "Moon") and names_exactly("The Moon", "Moon")
    assert names_exactly("the Beatles", "The Beatles")  # a title that begins with "The" still matches as written
    assert names_as_head("the Mouse", "Computer mouse")


def test_the_before_a_lowercase_word_keeps_a_description_from_naming_a_title():
    assert name_forms("the country") == ("the country",) and name_forms("The thing") == ("The thing",)
    assert not names_exactly("the country", "Country") and not names_exactly("the moon", "Moon")
    assert name_forms("The") == ("The",) and name_forms("Theatre") == ("Theatre",)
    assert not names_exactly("door", "The Doors")  # titles keep their article: a common noun names no band
