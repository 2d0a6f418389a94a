"""The profile section (torch.profiler's top operators of cvt_mm and HF) on the quick
settings, and the operator table rows it shares with the det-train section."""
from benchmarking.sections import measure_profile, operator_rows
from benchmarking.suite import settings
from in_process import in_process_suite


def test_operator_rows_rank_each_list_side_by_side_blank_where_short_or_failed():
    ranked = [{'op': 'aten::mm', 'ms': 12.4, 'share': 0.5, 'calls': 3},
              {'op': 'aten::_scaled_dot_product_flash_attention_for_cpu', 'ms': 5.0,
               'share': 0.2, 'calls': 1},
              {'op': 'aten::_scaled_dot_product_flash_attention_for_cpu_backward', 'ms': 4.0,
               'share': 0.1, 'calls': 1}]
    rows = operator_rows([ranked, ranked[:1], None], top=3)
    assert rows == [['1', 'mm', '12 ms, 50% (3)', 'mm', '12 ms, 50% (3)', '', ''],
                    ['2', 'SDPA (flash, CPU)', '5 ms, 20% (1)', '', '', '', ''],
                    ['3', 'SDPA (flash, CPU) backward', '4 ms, 10% (1)', '', '', '', '']]


def test_profile_section_lists_both_models_top_operators_at_both_sizes():
    section = measure_profile(in_process_suite(settings(quick=True)))
    assert len(section['tables']) == 2
    for label, results in section['raw'].items():
        for impl in ('cvt_mm', 'hf'):
            top = results[impl]['top']
            assert 0 < len(top) <= 8, (label, impl)
            assert all(op['ms'] >= 0 and 0 <= op['share'] <= 1 and op['calls'] >= 1
                       for op in top), (label, impl, top)
            assert results[impl]['total'] > 0
