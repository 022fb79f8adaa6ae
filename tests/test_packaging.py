"""The installed package must carry every module and data file the source tree has."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_under_app_is_listed_for_installation():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "app").rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    assert found - listed == set(), f"add these to [tool.setuptools] packages: {sorted(found - listed)}"
    assert config["package-dir"]["app.resources"] == "resources"
    assert (ROOT / "resources" / "__init__.py").exists()


def test_every_data_file_under_app_is_covered_by_package_data():
    import fnmatch

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]
    for path in (ROOT / "app").rglob("*"):
        if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(ROOT)
        # the data file belongs to the nearest enclosing package
        package_dir = path.parent
        while not (package_dir / "__init__.py").exists():
            package_dir = package_dir.parent
        package = ".".join(package_dir.relative_to(ROOT).parts)
        inner = path.relative_to(package_dir).as_posix()
        assert any(fnmatch.fnmatch(inner, p) for p in patterns.get(package, [])), (
            f"{relative} would be missing from the installed package: add it to package-data of {package}"
        )
