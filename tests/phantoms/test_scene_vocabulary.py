"""The scene's label maps name only values the finding labeler can produce.

``findings_from_labels`` silently falls back (zone "lower", a small effusion) for a value it does not
know, so a lexicon rename would quietly change every phantom; these tests make it loud instead.
"""

from __future__ import annotations

from lexray.findings import _lexicon as lex
from lexray.phantoms import scene


def test_zone_map_keys_are_labeler_locations() -> None:
    locations = set(lex.LOCATION.values()) | {zone for _, zone in lex.SITE.values()}
    assert set(scene._ZONE_OF_LOCATION) <= locations, set(scene._ZONE_OF_LOCATION) - locations


def test_large_severities_are_labeler_severities() -> None:
    assert scene._LARGE <= set(lex.SEVERITY.values()), scene._LARGE - set(lex.SEVERITY.values())


def test_scene_zones_and_sides_are_what_the_renderer_draws() -> None:
    assert set(scene._ZONE_OF_LOCATION.values()) <= set(scene.ZONES)
    assert set(scene._PARENCHYMAL_OF.values()) == set(scene.PARENCHYMAL_KINDS)
    assert set(scene._LESION_OF.values()) == set(scene.LESION_KINDS)
