"""How a mention names KB titles (gemel/text.py): exactly, or as the last words of a compound; the ranker's
name features and the senses whose prior it reads are made from these."""

from __future__ import annotations

from gemel.text import names_as_head, names_exactly, names_sense


def test_a_mention_names_a_title_exactly_up_to_case_and_its_qualifier():
    assert names_exactly("Japan", "Japan") and names_exactly(" nut ", "Nut (hardware)")
    assert not names_exactly("the country", "Country") and not names_exactly("", "Country")
    assert names_exactly("Birds", "Bird") and names_exactly("galaxies", "Galaxy")  # a plural names its singular
    assert names_as_head("blocks", "Tower block") and not names_exactly("Birds", "Bird of prey")


def test_a_mention_also_names_the_longer_titles_it_ends():
    assert names_as_head("mouse", "Computer mouse") and names_as_head("Hockey", "Ice hockey (sport)")
    assert names_as_head("Jordan", "Michael Jordan") and names_as_head("nut", "Brazil nut")
    assert not names_as_head("Congo", "Democratic Republic of the Congo")  # a phrase about Congo, no compound
    assert not names_as_head("Japan", "Empire of Japan") and not names_as_head("France", "Tour de France")
    assert not names_as_head("Congo", "Congo River") and not names_as_head("war", "World War II")
    assert not names_as_head("Mouse", "Mouse") and not names_as_head("", "Computer mouse")
    assert not names_as_head("use", "Computer mouse")  # whole words only
    assert names_sense("Mouse", "Mouse") and names_sense("Mouse", "Computer mouse")
    assert names_sense("Nut", "Nut (fruit)") and not names_sense("Nut", "Hazelnut")
