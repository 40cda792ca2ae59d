"""The dependency arrows of docs/architecture.md that views rely on: imaging sits below inference and
training (it imports neither, nor any model code), and training does not import inference."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "src" / "perceptiq"


def imported_packages(folder: Path) -> dict[str, set[str]]:
    """file -> the perceptiq subpackages it imports (relative or absolute imports)."""
    found = {}
    for path in folder.rglob("*.py"):
        names = set()
        depth = len(path.relative_to(PACKAGE).parts) - 1     # folders below perceptiq/
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 0 and module.startswith("perceptiq."):
                    names.add(module.split(".")[1])
                elif node.level > depth:                     # climbs to perceptiq/ itself
                    names.add(module.split(".")[0])
                elif node.level == depth and node.level:     # a sibling package of this one
                    names.add(path.relative_to(PACKAGE).parts[0])
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("perceptiq.")}
        found[str(path.relative_to(PACKAGE))] = names
    return found


def test_imaging_imports_no_model_inference_or_training_code():
    for path, names in imported_packages(PACKAGE / "imaging").items():
        assert not names & {"inference", "training", "models", "heads", "experts", "prompts", "serving"}, path


def test_training_does_not_import_inference():
    offenders = {path: names for path, names in imported_packages(PACKAGE / "training").items()
                 if "inference" in names}
    assert not offenders, offenders
