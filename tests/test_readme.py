"""The README's two set-up commands stay true: CI runs exactly the test one."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def test_readme_has_exactly_two_setup_commands():
    run_cmd, test_cmd = readme_commands()
    assert "streamlit run app.py" in run_cmd
    assert "pytest" in test_cmd


def test_ci_runs_the_readme_test_command_verbatim():
    _, test_cmd = readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd.strip() in ci_lines


def test_requirements_admit_the_local_torch():
    reqs = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch>=[\d.]+,<2\.15$", reqs, re.M)
    assert re.search(r"^torchvision>=[\d.]+,<0\.30$", reqs, re.M)


def test_relative_links_in_readme_and_docs_point_to_files():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
