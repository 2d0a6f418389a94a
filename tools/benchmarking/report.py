"""Rendering the results document (:mod:`.results`): the markdown block, the size plot, the
console tables. Nothing here measures; matplotlib and rich are imported only when drawing or
printing.
"""
from collections import Counter
from pathlib import Path
from statistics import median
from typing import Dict, Iterable, List, Optional

from .results import UNKNOWN

MARK_START, MARK_END = '<!-- results:start -->', '<!-- results:end -->'
PLOT_ALT = 'latency and peak RSS against input size'
# Implementations in the size plot: key in per_size, legend label, line style.
PLOT_SERIES = (('cvt_mm', 'cvt_mm', 'o-'), ('hf', 'Hugging Face', 's--'))


def markdown_row(cells: Iterable) -> str:
    """One markdown table row; a ``|`` inside a cell is escaped."""
    return '| ' + ' | '.join(str(cell).replace('|', '\\|') for cell in cells) + ' |'


def environment_lines(env: dict) -> List[str]:
    """The environment of a section as two sentences: CPU and threads; versions."""
    capability = env.get('cpu_capability', UNKNOWN)
    lines = [f"CPU: {env['cpu']}, {env['logical_cores']} logical cores, torch CPU capability "
             f"{capability}; {env['threads']} threads (torch, OMP, MKL).",
             f"torch {env['torch']}, transformers {env['transformers']}, "
             f"python {env['python']}."]
    if 'gpu' in env:
        lines.insert(0, f"GPU: {env['gpu']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
                        f"timm {env['timm']}.")
    return lines


def common_environment(sections: Dict[str, dict]) -> Optional[dict]:
    """The environment most sections were measured in (the latest such on a tie)."""
    envs = [section['environment'] for section in sections.values()]
    if not envs:
        return None
    keys = [repr(sorted(env.items())) for env in envs]
    counts = Counter(keys)
    best = max(range(len(envs)), key=lambda i: (counts[keys[i]], i))
    return envs[best]


def render_results(data: dict, plot_link: Optional[str] = None,
                   source: str = 'benchmarks.json') -> str:
    """The markdown results block, markers included, of a results document.

    Args:
        data (dict): The results document (:mod:`.results`).
        plot_link (str, optional): Path of the size plot relative to the markdown file; the
            image goes under the dense section's table. Defaults to None (no image).
        source (str): The data file's name as the block's header names it.
            Defaults to 'benchmarks.json'.
    """
    sections = data['sections']
    out = [MARK_START, '',
           f'<!-- Rendered from {source} by tools/benchmark.py; edits here are lost. -->', '']
    common = common_environment(sections)
    lines = environment_lines(common) if common else []
    if data.get('quick'):
        lines.insert(0, '**--quick smoke test: tiny model and sizes, numbers meaningless.**')
    out += [f'- {line}' for line in lines] + ([''] if lines else [])
    for name, section in sections.items():
        load_before, load_after = section['load_average']
        out.append(f"<!-- section {name}: {section['measured']}, "
                   f"{section['minutes']:.1f} min -->")
        extra = []
        if section['environment'] != common:
            extra.append('Environment: ' + ' '.join(environment_lines(section['environment'])))
        extra.append(f"Measured {section['measured']} ({section['minutes']:.1f} min); load "
                     f"average (1 min) {load_before:.1f} before, {load_after:.1f} after.")
        for tab in section['tables']:
            columns = tab['columns']
            out += [f"### {tab['title']}", '', markdown_row(columns), '|' + '---|' * len(columns)]
            out += [markdown_row(row) for row in tab['rows']]
            out += [''] + [f'- {note}' for note in list(tab['notes']) + extra] + ['']
            if name == 'dense' and plot_link:
                out += [f'![{PLOT_ALT}]({plot_link})', '']
    out.append(MARK_END)
    return '\n'.join(out)


def update_markdown(path: Path, block: str) -> None:
    """Put ``block`` between the results markers of the markdown file at ``path``, leaving
    the text around them alone; a file without the markers gets just the results."""
    path = Path(path)
    text = path.read_text() if path.exists() else ''
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    else:
        text = '# Benchmarks\n\n' + block + '\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def plot_sizes(section: dict, path: Path) -> bool:
    """Draw the dense section's latency and peak RSS against input size into ``path``.

    Args:
        section (dict): The dense section of a results document.
        path (Path): Where the PNG goes.

    Returns:
        bool: False, and ``path`` untouched, when the section has no per-size data.
    """
    per_size = section.get('per_size')
    if not per_size:
        return False
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    for impl, label, style in PLOT_SERIES:
        points = per_size['impls'].get(impl) or []
        if not points:
            continue
        long_sides = [point['input'][1] for point in points]
        ax_time.plot(long_sides, [median(point['times']) for point in points], style,
                     label=label)
        ax_mem.plot(long_sides, [point['peak_rss_mb'] / 1024 for point in points], style,
                    label=label)
    for ax, ylabel in ((ax_time, 'forward latency (s)'), (ax_mem, 'peak RSS (GB)')):
        ax.set_xlabel('input long side (px, aspect 800:1333)')
        ax.set_ylabel(ylabel)
        ax.set_yscale('log')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend()
    fig.suptitle(f"CvT-{per_size['arch']} backbone, batch 1, fp32, "
                 f"{section['environment']['threads']} CPU threads")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def print_tables(sections: Dict[str, dict]) -> None:
    """Print the sections' tables to the console (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for section in sections.values():
        for tab in section['tables']:
            rich_table = Table(title=tab['title'], title_justify='left')
            for column in tab['columns']:
                rich_table.add_column(column, overflow='fold')
            for row in tab['rows']:
                rich_table.add_row(*row)
            console.print(rich_table)
