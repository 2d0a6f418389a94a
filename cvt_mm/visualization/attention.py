"""CvT attention maps for chosen queries, without the full attention matrix.

The backbone runs its attention through ``scaled_dot_product_attention`` and never forms the
weights. To draw them, forward hooks capture each chosen block's attention input (the tokens
after ``norm1``) and the weights are recomputed for the chosen queries only, exactly as
``ConvAttention`` defines them: q from ``conv_proj_q`` + ``proj_q`` at the query positions, k
for all positions from the strided ``conv_proj_k`` + ``proj_k`` (the cls token first, in the
stage that has one, bypassing the convolution), and ``softmax(q k^T * scale)`` per head with
CvT's ``scale = embed_dims ** -0.5`` over the whole width. Memory grows with
``queries x keys``, not ``tokens x keys``: a CvT-13 stage-0 block at 800x1333 has 66,600 tokens
and 16,650 keys, a 4.4 GB matrix per head that is never built.

Attention rollout (Abnar & Zuidema, 2020, https://arxiv.org/abs/2005.00928) follows a query
back through the blocks of its stage: ``r <- r (0.5 A + 0.5 I)`` with ``A`` averaged over the
heads. CvT's keys live on a coarser grid than its queries (``stride_kv * pool_kv``), so each
key's weight is spread evenly over the ``stride x stride`` query cells it is centred on; ``r A``
is formed one chunk of queries at a time, again without the full matrix.
"""
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from cvt_mm.models.backbones.cvt import ConvAttention, CvT

HWShape = Tuple[int, int]
# Query rows per chunk of the rollout's r A: at most this many x keys weights at once.
ROLLOUT_CHUNK_ROWS = 1024


@contextmanager
def capture_attention_inputs(backbone: CvT, blocks: Sequence[Tuple[int, int]]
                             ) -> Iterator[Dict[Tuple[int, int], Tuple[torch.Tensor, HWShape]]]:
    """Record the input of each ``(stage, block)``'s attention during forwards in the block.

    Args:
        backbone (CvT): The backbone.
        blocks (Sequence[Tuple[int, int]]): ``(stage, block)`` indices, 0-based.

    Yields:
        dict: ``(stage, block) -> (tokens, hw_shape)``, filled by each forward: the attention's
        input tokens ``(B, [1 +] H*W, C)`` (cls first where the stage has one) and the map size.
    """
    captured = {}
    handles = []
    for stage, block in blocks:
        attn = backbone.stages[stage].blocks[block].attn

        def hook(module, args, key=(stage, block)):
            tokens, hw_shape = args
            captured[key] = (tokens.detach(), tuple(int(size) for size in hw_shape))

        handles.append(attn.register_forward_pre_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def key_map_size(attn: ConvAttention, hw_shape: HWShape) -> HWShape:
    """The (h, w) of the key grid of a block whose tokens form a ``hw_shape`` map: the output
    size of ``conv_proj_k``, run on a meta tensor (sizes only; no data, no BN statistics)."""
    if attn.conv_proj_k is None:
        return tuple(hw_shape)
    state = {name: tensor.to('meta') for name, tensor in
             attn.conv_proj_k.state_dict(keep_vars=True).items()}
    # A batch of 2: a train-mode BN needs more than one value per channel.
    probe = torch.empty(2, attn.embed_dims, *hw_shape, device='meta')
    return tuple(torch.func.functional_call(attn.conv_proj_k, state, probe).shape[2:])


@torch.no_grad()
def attention_weights(attn: ConvAttention, tokens: torch.Tensor, hw_shape: HWShape,
                      queries: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T * scale)`` of chosen queries over all keys, per head; in a windowed
    block (``window_size``) over the keys of each query's window, the others' weights zero.

    Args:
        attn (ConvAttention): The block's attention (eval mode for BN's running statistics).
        tokens (Tensor): Its input, ``(B, [1 +] H*W, C)``, as captured.
        hw_shape (Tuple[int, int]): The map size H, W.
        queries (Tensor): ``(N,)`` token indices; with a cls token, 0 is the cls token and
            ``1 + y * W + x`` the position (x, y).

    Returns:
        Tensor: ``(B, heads, N, keys)`` weights, keys ordered as ``k``: the cls token first
        (if any), then the key map row by row (:func:`key_map_size`).
    """
    cls_token, spatial, feature_map = attn.split_tokens(tokens, hw_shape)
    q = attn.project(attn.conv_proj_q, attn.proj_q, spatial, feature_map, cls_token)[:, queries]
    k = attn.project(attn.conv_proj_k, attn.proj_k, spatial, feature_map, cls_token)
    q, k = attn._split_heads(q), attn._split_heads(k)  # (B, heads, N | keys, d)
    logits = q @ k.transpose(-2, -1) * attn.scale
    if attn.window_size and max(hw_shape) > attn.window_size:
        logits = logits.masked_fill(~window_keys(attn, hw_shape, queries), float('-inf'))
    return torch.softmax(logits, dim=-1)


def window_keys(attn: ConvAttention, hw_shape: HWShape, queries: torch.Tensor) -> torch.Tensor:
    """``(N, keys)``: which keys each query of a windowed block attends to, those of its own
    window (``token_maps.window_attention``); windowed stages have no cls token."""
    window, kv_window = attn.window_size, attn.window_size // attn.key_stride
    key_rows, key_cols = (torch.arange(size) // kv_window for size in key_map_size(attn, hw_shape))
    rows, cols = queries // hw_shape[1] // window, queries % hw_shape[1] // window
    same_row = key_rows[None, :, None] == rows[:, None, None]
    same_col = key_cols[None, None, :] == cols[:, None, None]
    return (same_row & same_col).flatten(1)


def query_index(attn: ConvAttention, hw_shape: HWShape, x: Optional[int] = None,
                y: Optional[int] = None) -> int:
    """The token index of map position (x, y), or of the cls token when both are None."""
    offset = int(attn.with_cls_token)
    if x is None and y is None:
        if not attn.with_cls_token:
            raise ValueError('this stage has no cls token (only the last stage carries one)')
        return 0
    height, width = hw_shape
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f'query ({x}, {y}) is outside the {width}x{height} token map')
    return offset + y * width + x


def _keys_to_tokens(attn: ConvAttention, weights: torch.Tensor, hw_shape: HWShape
                    ) -> torch.Tensor:
    """Spread weights over keys ``(..., [1 +] h*w)`` onto the query tokens ``(..., [1 +] H*W)``:
    each key's weight split evenly over the stride x stride cells it is centred on."""
    offset = int(attn.with_cls_token)
    key_hw = key_map_size(attn, hw_shape)
    spatial = weights[..., offset:].unflatten(-1, key_hw)
    stride_h, stride_w = hw_shape[0] / key_hw[0], hw_shape[1] / key_hw[1]
    rows = (torch.arange(hw_shape[0]) / stride_h).long().clamp(max=key_hw[0] - 1)
    cols = (torch.arange(hw_shape[1]) / stride_w).long().clamp(max=key_hw[1] - 1)
    # How many query cells each key covers, to split its weight evenly among them.
    cover = (torch.bincount(rows, minlength=key_hw[0])[:, None]
             * torch.bincount(cols, minlength=key_hw[1])[None, :]).clamp(min=1)
    spread = (spatial / cover.to(spatial))[..., rows[:, None], cols[None, :]].flatten(-2)
    if offset:
        spread = torch.cat((weights[..., :1], spread), dim=-1)
    return spread


@torch.no_grad()
def attention_rollout(backbone: CvT, captured: Dict[Tuple[int, int], Tuple[torch.Tensor,
                                                                            HWShape]],
                      stage: int, block: int, query: int,
                      chunk_rows: int = ROLLOUT_CHUNK_ROWS) -> torch.Tensor:
    """Attention rollout of one query from ``block`` back to the stage's first block.

    Args:
        backbone (CvT): The backbone.
        captured (dict): From :func:`capture_attention_inputs` over blocks 0..``block`` of
            ``stage``, after a forward.
        stage (int): The stage.
        block (int): The block the query is taken at.
        query (int): Its token index (:func:`query_index`).
        chunk_rows (int): Query rows per chunk of ``r A``. Defaults to 1024.

    Returns:
        Tensor: ``(B, [1 +] H*W)`` relevance of each input token of block 0 (sums to 1).
    """
    tokens, hw_shape = captured[(stage, block)]
    relevance = tokens.new_zeros(tokens.shape[:2])
    relevance[:, query] = 1
    for index in range(block, -1, -1):
        attn = backbone.stages[stage].blocks[index].attn
        tokens, _ = captured[(stage, index)]
        mixed = torch.zeros_like(relevance)
        for start in range(0, tokens.shape[1], chunk_rows):
            rows = torch.arange(start, min(start + chunk_rows, tokens.shape[1]))
            weights = attention_weights(attn, tokens, hw_shape, rows).mean(1)  # (B, n, keys)
            mixed += _keys_to_tokens(attn, (relevance[:, rows, None] * weights).sum(1),
                                     hw_shape)
        relevance = 0.5 * relevance + 0.5 * mixed
    return relevance


def read_image(path: str):
    """The BGR uint8 image at ``path`` (``mmcv.imread``); SystemExit naming the file if it
    cannot be read."""
    import mmcv

    image = mmcv.imread(str(path)) if Path(path).is_file() else None
    if image is None:
        raise SystemExit(f'error: {path}: cannot read the image')
    return image


def preprocess_image(image, data_preprocessor, size: Optional[HWShape] = None) -> torch.Tensor:
    """A BGR uint8 image (H, W, 3) as the normalised (1, 3, H, W) batch the model sees.

    Args:
        image (np.ndarray): BGR, as ``mmcv.imread`` returns it.
        data_preprocessor: The model's data preprocessor (for mean, std and channel order).
        size (Tuple[int, int], optional): Resize to this (height, width) first. Defaults to
            None (keep the size).
    """
    import mmcv

    if size is not None:
        image = mmcv.imresize(image, (size[1], size[0]))
    tensor = torch.from_numpy(image).permute(2, 0, 1).float()
    if getattr(data_preprocessor, '_channel_conversion', False) or getattr(
            data_preprocessor, 'to_rgb', False):
        tensor = tensor.flip(0)
    mean = getattr(data_preprocessor, 'mean', None)
    if mean is not None:
        tensor = (tensor - mean.view(3, 1, 1).cpu()) / data_preprocessor.std.view(3, 1, 1).cpu()
    return tensor[None]


def draw_attention_maps(image_rgb, maps: torch.Tensor, titles: List[str], out_file: str,
                        query_xy: Optional[Tuple[float, float]] = None,
                        suptitle: str = '') -> None:
    """Heat maps over the image, one panel per map (matplotlib).

    Args:
        image_rgb (np.ndarray): (H, W, 3) uint8 RGB image.
        maps (Tensor): ``(P, h, w)`` maps, each upsampled to the image and stretched from its
            own minimum to its own maximum (the colour bar of each panel: its range).
        titles (List[str]): One per panel.
        out_file (str): The figure file (PNG, ...).
        query_xy (Tuple[float, float], optional): Image coordinates of the query, marked on
            every panel. Defaults to None.
        suptitle (str): The figure title. Defaults to ''.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    height, width = image_rgb.shape[:2]
    upsampled = F.interpolate(maps[:, None].float(), size=(height, width), mode='bilinear',
                              align_corners=False)[:, 0]
    low = upsampled.flatten(1).amin(1)[:, None, None]
    high = upsampled.flatten(1).amax(1)[:, None, None]
    upsampled = (upsampled - low) / (high - low).clamp(min=1e-12)
    panels = len(maps)
    columns = min(panels, 3)
    rows = (panels + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, squeeze=False,
                                figsize=(4.5 * columns, 4.5 * rows * height / width + 1.2))
    for axis in axes.flat:
        axis.axis('off')
    for axis, heat, title, raw in zip(axes.flat, upsampled, titles, maps):
        axis.imshow(image_rgb)
        axis.imshow(heat.numpy(), cmap='jet', alpha=0.5, vmin=0, vmax=1)
        if query_xy is not None:
            axis.plot(*query_xy, marker='x', color='white', markersize=10, mew=2)
        axis.set_title(f'{title}\nblue {float(raw.min()):.2e} .. red {float(raw.max()):.2e}',
                       fontsize=8)
    if suptitle:
        figure.suptitle(suptitle, fontsize=9, wrap=True)
    figure.tight_layout()
    figure.savefig(out_file, dpi=100)
    plt.close(figure)


def visualize_attention(backbone: CvT, image, data_preprocessor, out_file: str,
                        stage: int = -1, block: int = -1, head: Optional[int] = None,
                        query_xy: Optional[Tuple[float, float]] = None, cls: bool = False,
                        rollout: bool = False, size: Optional[HWShape] = None) -> dict:
    """Draw one block's attention (one panel per head) or a rollout for one query.

    Args:
        backbone (CvT): The backbone (eval mode).
        image (np.ndarray): BGR uint8 image, as ``mmcv.imread`` returns it.
        data_preprocessor: The model's data preprocessor (mean, std, channel order).
        out_file (str): The figure file.
        stage (int): The stage; negative counts from the end. Defaults to -1.
        block (int): The block in the stage; negative counts from the end. Defaults to -1.
        head (int, optional): Draw only this head; None draws all. Defaults to None.
        query_xy (Tuple[float, float], optional): The query in image pixels (x, y); None with
            ``cls=False`` takes the image centre. Defaults to None.
        cls (bool): Query the cls token (the last stage only). Defaults to False.
        rollout (bool): Attention rollout over blocks 0..``block`` of the stage instead of the
            block's own attention. Defaults to False.
        size (Tuple[int, int], optional): Resize the image to (height, width) first.
            Defaults to None.

    Returns:
        dict: ``stage``, ``block``, ``query`` (token index), ``token_map`` (H, W),
        ``key_map`` (h, w), ``input_size`` (H, W) and ``out_file``.
    """
    import mmcv

    inputs = preprocess_image(image, data_preprocessor, size)
    rgb = mmcv.bgr2rgb(image if size is None else mmcv.imresize(image, (size[1], size[0])))
    stage %= backbone.num_stages
    depth = len(backbone.stages[stage].blocks)
    block %= depth
    blocks = [(stage, index) for index in range(block + 1)] if rollout else [(stage, block)]
    param = next(backbone.parameters())
    with capture_attention_inputs(backbone, blocks) as captured, torch.no_grad():
        backbone.eval()(inputs.to(param))
    attn = backbone.stages[stage].blocks[block].attn
    tokens, hw_shape = captured[(stage, block)]
    height, width = inputs.shape[2:]
    if cls:
        query, marker = query_index(attn, hw_shape), None
    else:
        x, y = query_xy if query_xy is not None else (width / 2, height / 2)
        query = query_index(attn, hw_shape, min(int(x * hw_shape[1] / width), hw_shape[1] - 1),
                            min(int(y * hw_shape[0] / height), hw_shape[0] - 1))
        marker = (x, y)
    offset = int(attn.with_cls_token)
    where = 'cls token' if cls else f'query ({marker[0]:.0f}, {marker[1]:.0f})'
    key_hw = key_map_size(attn, hw_shape)
    if rollout:
        relevance = attention_rollout(backbone, captured, stage, block, query)[0].cpu()
        maps = relevance[offset:].view(1, *hw_shape)
        titles = ['rollout, heads averaged' + (f'; cls token {relevance[0]:.3f}'
                                               if offset else '')]
        suptitle = f'stage {stage}, blocks 0-{block}:\nattention rollout of the {where}'
    else:
        weights = attention_weights(attn, tokens, hw_shape,
                                    torch.tensor([query], device=tokens.device))[0, :, 0].cpu()
        heads = range(weights.shape[0]) if head is None else [head]
        maps = torch.stack([weights[h, offset:].view(key_hw) for h in heads])
        titles = [f'head {h}' + (f'; cls key {weights[h, 0]:.3f}' if offset else '')
                  for h in heads]
        suptitle = (f'stage {stage}, block {block}: attention of the {where}\nover the '
                    f'{key_hw[1]}x{key_hw[0]} keys')
    draw_attention_maps(rgb, maps, titles, out_file, marker, suptitle)
    return dict(stage=stage, block=block, query=query, token_map=hw_shape, key_map=key_hw,
                input_size=(height, width), out_file=out_file)
