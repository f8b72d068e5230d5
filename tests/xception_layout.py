"""The DeepLabv3+ / Xception-65 parameter count of the authors' TensorFlow code, from its layer list, counted without
fusionlab's modules (the tests of the model and of ``fusionlab models`` hold the built models to it)."""


def conv(cin: int, cout: int, k: int, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def separable(cin: int, cout: int) -> int:
    """Depthwise 3x3 + its BN + pointwise 1x1 + the BN after it (gamma and beta each)."""
    return cin * 9 + 2 * cin + cin * cout + 2 * cout


XCEPTION_65_ENTRY = (128, 256, 728)
XCEPTION_71_ENTRY = (128, 256, 256, 728, 728)


def tensorflow_layout_parameters(num_classes: int, entry: tuple[int, ...] = XCEPTION_65_ENTRY) -> int:
    """DeepLabv3+ on an Xception of the authors' TensorFlow code, from its layer list: xception_65's (or, with
    ``XCEPTION_71_ENTRY``, xception_71's) depth lists (deeplab/core/xception.py) and model.py's separable ASPP (rates
    6, 12, 18) and decoder (low-level features of 256 channels in both)."""
    total = conv(3, 32, 3) + 64 + conv(32, 64, 3) + 128
    units = [(cin, [width] * 3, "conv") for cin, width in zip((64, *entry), entry, strict=False)]
    units += [(728, [728] * 3, "sum")] * 16 + [(728, [728, 1024, 1024], "conv"), (1024, [1536, 1536, 2048], "none")]
    for cin, depths, skip in units:
        channels = cin
        for depth in depths:
            total += separable(channels, depth)
            channels = depth
        if skip == "conv":
            total += conv(cin, depths[-1], 1) + 2 * depths[-1]
    aspp = 2 * (conv(2048, 256, 1) + 512) + 3 * separable(2048, 256) + conv(5 * 256, 256, 1) + 512
    decoder = conv(256, 48, 1) + 96 + separable(304, 256) + separable(256, 256) + conv(256, num_classes, 1, bias=True)
    return total + aspp + decoder
