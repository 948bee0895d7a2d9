"""Site files: data only, validated, with the failing field named."""

from pathlib import Path

import pytest

from sohae_watch.errors import InputError
from sohae_watch.site import load_site

GOOD = """
id: demo
name: Demo site
grid: {crs: EPSG:32651, resolution: 0.5}
aoi: {type: Polygon, coordinates: [[[124.70, 39.66], [124.71, 39.66], [124.71, 39.665], [124.70, 39.665], [124.70, 39.66]]]}
imagery: imagery
structures:
  - id: pad
    name: launch pad
    baseline: present
    geometry: {type: Polygon, coordinates: [[[124.701, 39.661], [124.702, 39.661], [124.702, 39.662], [124.701, 39.662], [124.701, 39.661]]]}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(text)
    return p


def test_good_site(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, GOOD))
    assert site.id == "demo" and site.crs.to_epsg() == 32651 and site.resolution == 0.5
    assert site.structures[0].baseline == "present"
    assert site.imagery == tmp_path / "imagery"
    assert site.thresholds["min_observed_fraction"] == 0.5
    g = site.grid()
    assert g.resolution == 0.5 and 1500 < g.width < 1800


def test_imagery_relative_to_the_site_file_is_resolved(tmp_path: Path) -> None:
    """As the shipped configs/sohae.yaml has it: reports then name the files without '..'."""
    (tmp_path / "configs").mkdir()
    site = load_site(
        write(tmp_path / "configs", GOOD.replace("imagery: imagery", "imagery: ../im"))
    )
    assert site.imagery == tmp_path.resolve() / "im"


def test_default_crs_is_utm_of_aoi(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, GOOD.replace("crs: EPSG:32651, ", "")))
    assert site.crs.to_epsg() == 32651


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("id: demo\n", "", "'id'"),
        ("resolution: 0.5", "resolution: -1", "'grid.resolution'"),
        ("crs: EPSG:32651", "crs: EPSG:999999", "'grid.crs'"),
        ("crs: EPSG:32651", "crs: EPSG:4326", "'grid.crs'"),
        ("aoi: {type: Polygon,", "aoi: {type: Point,", "'aoi'"),
        ("baseline: present", "baseline: maybe", "'structures[0].baseline'"),
        ("    geometry: {type: Polygon", "    geom: {type: Polygon", "'structures[0].geometry'"),
        (
            "imagery: imagery",
            "thresholds: {min_observed_fraction: 3}",
            "'thresholds.min_observed_fraction'",
        ),
        # a bowtie: its outline crosses itself
        (
            "[[[124.701, 39.661], [124.702, 39.661], [124.702, 39.662], [124.701, 39.662],",
            "[[[124.701, 39.661], [124.702, 39.662], [124.702, 39.661], [124.701, 39.662],",
            "'structures[0].geometry' is not a valid polygon (Self-intersection",
        ),
        # a footprint 10 km east of the aoi
        (
            "[[[124.701, 39.661], [124.702, 39.661], [124.702, 39.662], [124.701, 39.662],"
            " [124.701, 39.661]]]",
            "[[[124.801, 39.661], [124.802, 39.661], [124.802, 39.662], [124.801, 39.662],"
            " [124.801, 39.661]]]",
            "'structures[0].geometry' (pad) lies outside the aoi",
        ),
    ],
)
def test_invalid_field_is_named(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in GOOD
    with pytest.raises(InputError) as err:
        load_site(write(tmp_path, GOOD.replace(old, new, 1)))
    assert field in str(err.value) and "site.yaml" in str(err.value)


def test_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not valid YAML"):
        load_site(write(tmp_path, "id: [unclosed\n  - : :"))


def test_loading_never_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = GOOD + f"\nextra: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(InputError):
        load_site(write(tmp_path, evil))
    assert not marker.exists()


def test_unknown_site_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="unknown site 'atlantis'"):
        load_site("atlantis")


def test_fields_the_format_lacks_are_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A typo (``threshold:``) would drop the setting silently: the loader says so, with the field
    it probably meant; the site loads as before."""
    text = GOOD.replace("imagery: imagery", "threshold: {min_observed_fraction: 0.9}")
    text = text.replace("    baseline: present", "    baseline: present\n    heigth: 30")
    with caplog.at_level("WARNING", logger="sohae_watch.site"):
        site = load_site(write(tmp_path, text))
    assert site.thresholds["min_observed_fraction"] == 0.5
    messages = [r.getMessage() for r in caplog.records]
    assert any("'threshold'" in m and "did you mean 'thresholds'" in m for m in messages)
    assert any("'structures[0].heigth'" in m for m in messages)
    caplog.clear()
    with caplog.at_level("WARNING", logger="sohae_watch.site"):
        load_site(write(tmp_path, GOOD))
    assert caplog.records == []
