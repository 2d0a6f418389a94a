"""The docs name only what the repository holds: every repository path that README.md,
configs/README.md and docs/*.md name (in backticks, in code blocks, as a link, or in plain text
with a file extension) exists, and every link into a page lands on one of its headings."""
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = [REPO_ROOT / 'README.md', REPO_ROOT / 'configs' / 'README.md',
        *sorted((REPO_ROOT / 'docs').glob('*.md')), *sorted((REPO_ROOT / 'docs').glob('*/*.md'))]
# The top-level folders whose paths the docs name, relative to the repository root.
TOP = r'(?:cvt_mm|configs|tools|tests|docs)/'
IN_CODE = re.compile(r'(?<![\w./:-])(' + TOP + r'[\w.\-/*<>{},]*)')
IN_TEXT = re.compile(r'(?<![\w./:-])(' + TOP + r'[\w.\-/]*\.(?:py|md|sh|yml|json|png|txt))\b')
FENCED = re.compile(r'```.*?```', re.S)
INLINE = re.compile(r'`[^`\n]+`')
LINK = re.compile(r'\]\(([^)\s]+)\)')
# Paths the docs name that are made outside the repository, with what makes them.
NOT_IN_THE_REPOSITORY = {
    'cvt_mm/.mim/': 'written into the installed package by a non-editable install (setup.py)',
}


def named_paths(text: str) -> set:
    """Repository paths a page names; placeholders (``<name>``), globs and brace lists are
    expanded by the caller or left out."""
    fenced = FENCED.findall(text)
    prose = FENCED.sub('', text)
    code = fenced + INLINE.findall(prose)
    paths = {m.group(1) for span in code for m in IN_CODE.finditer(span)}
    paths |= {m.group(1) for m in IN_TEXT.finditer(INLINE.sub('', prose))}
    cleaned = set()
    for path in paths:
        path = path.split('::')[0].rstrip('.,;:')  # pytest node ids, sentence punctuation
        if any(mark in path for mark in '<>{'):
            continue  # a placeholder (tests/test_<subpackage>/)
        cleaned.add(path)
    return cleaned


def exists(path: str) -> bool:
    if '*' in path:
        return any(REPO_ROOT.glob(path))
    return (REPO_ROOT / path).exists()


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r'[`*]|\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip()).lower()
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(page: Path) -> set:
    text = FENCED.sub('', page.read_text())
    seen, out = {}, set()
    for heading in re.findall(r'^#{1,6} +(.+?) *#*$', text, re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f'{base}-{count}')
    return out


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_repository_path_a_doc_names_exists(doc):
    missing = sorted(path for path in named_paths(doc.read_text())
                     if path not in NOT_IN_THE_REPOSITORY and not exists(path))
    assert not missing, f'{doc.relative_to(REPO_ROOT)} names paths that do not exist: {missing}'


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_link_lands_on_a_file_and_heading(doc):
    broken = []
    for target in LINK.findall(FENCED.sub('', doc.read_text())):
        if target.startswith(('http://', 'https://', 'mailto:')):
            continue
        file_part, _, anchor = target.partition('#')
        page = (doc.parent / file_part).resolve() if file_part else doc
        if not page.exists():
            broken.append(target)
        elif anchor and page.suffix == '.md' and anchor not in anchors(page):
            broken.append(target)
    assert not broken, f'{doc.relative_to(REPO_ROOT)} links to missing files or headings: ' \
                       f'{broken}'


def test_the_checks_see_what_they_check():
    # The extraction itself: backticks, code blocks, links and plain paths with an extension.
    text = ('Run `python tools/train.py configs/a.py` and see [x](../docs/b.md#c);\n'
            '```\npython tools/infer.py CONFIG\n```\nplain tests/test_x.py::test_y, '
            'not `tests/test_<name>/` nor work_dirs/run.py.')
    assert named_paths(text) == {'tools/train.py', 'configs/a.py', 'tools/infer.py',
                                 'tests/test_x.py'}
    assert slug('Mixed precision: `--amp [float16|bfloat16]`') == \
        'mixed-precision---amp-float16bfloat16'
    assert slug("What serves mmcv's compiled ops") == 'what-serves-mmcvs-compiled-ops'


def layout_rows() -> list:
    """The first cells of README's layout table."""
    section = REPO_ROOT.joinpath('README.md').read_text().split('\n## Layout\n', 1)[1]
    section = section.split('\n## ', 1)[0]
    return [line.split('|')[1] for line in section.splitlines()
            if line.startswith('| `')]


def test_the_layout_table_names_every_part_of_the_package_and_the_tree():
    """README's layout table matches the tree: each subpackage and module of cvt_mm and each
    top-level folder of the repository has a row (by name), and each row names what exists."""
    rows = layout_rows()
    named = set()
    for cell in rows:
        names = re.findall(r'`([^`]+)`', cell)
        folder = names[0].rsplit('/', 1)[0] if '/' in names[0].rstrip('/') else ''
        for name in names:
            path = name
            if folder and '/' not in name.rstrip('/') and exists(f'{folder}/{name}'):
                path = f'{folder}/{name}'  # `cvt_mm/registry.py`, `version.py`
            assert exists(path.rstrip('/')), f'README layout row {cell.strip()!r}: no {path}'
            named.add(path.rstrip('/'))
    package = REPO_ROOT / 'cvt_mm'
    parts = {f'cvt_mm/{p.name}' for p in package.iterdir()
             if (p / '__init__.py').exists() or p.suffix == '.py' and p.name != '__init__.py'}
    folders = {p.name for p in REPO_ROOT.iterdir()
               if p.is_dir() and p.name in ('configs', 'tools', 'docs', 'tests')}
    missing = sorted(part for part in parts | folders
                     if not any(path == part or path.startswith(part + '/') for path in named))
    assert not missing, f'README.md "Layout" has no row for {missing}'
