"""mmcv 2.1 under numpy 2 and CPU autocast."""
import numpy as np
import torch

from .utils import once, version_in


def fix_mmcv_adjust_hue_for_numpy2() -> None:
    """Give ``mmcv.adjust_hue`` numpy 1's uint8 wrap-around for negative hue
    shifts.

    Breaks on: mmcv <= 2.1.0 with numpy >= 2. ``adjust_hue`` rotates the 8-bit
    hue channel by ``np.uint8(hue_factor * 255)``; numpy 1 wrapped a negative
    value modulo 256, numpy 2 raises ``OverflowError: Python integer -4 out of
    bounds for uint8``. mmpretrain's ``ColorJitter`` draws ``hue_factor`` in
    ``[-hue, hue]``, so the CDS colour view fails on about half the images.
    Fix: ``hue_factor`` in ``[-0.5, 0)`` uses the same cv2/pillow steps with
    the shift ``int(hue_factor * 255) % 256`` (numpy 1's result, bit for bit);
    every other call, bad input included, goes to the original unchanged.
    Patched on ``mmcv``, ``mmcv.image`` and ``mmcv.image.photometric``, the
    names mmpretrain and mmcv look it up by.
    """
    if (not version_in('mmcv', max_version='2.1.0')
            or not version_in('numpy', min_version='2.0.0')
            or not once('fix_mmcv_adjust_hue_for_numpy2')):
        return
    try:
        import mmcv
        import mmcv.image
        from mmcv.image import photometric
    except ImportError:  # mmcv absent: nothing to fix
        return
    original = photometric.adjust_hue

    def adjust_hue(img, hue_factor, backend=None):
        if not (-0.5 <= hue_factor < 0 and isinstance(img, np.ndarray)
                and img.ndim in (2, 3)):
            return original(img, hue_factor, backend=backend)
        shift = np.uint8(int(hue_factor * 255) % 256)
        backend = photometric.imread_backend if backend is None else backend
        if backend == 'pillow':
            from PIL import Image
            assert img.dtype == np.uint8, \
                'Pillow backend only support uint8 type'
            pil_image = Image.fromarray(img[..., ::-1], mode='RGB')
            h, s, v = pil_image.convert('HSV').split()
            # uint8 + uint8 wraps
            np_h = np.array(h, dtype=np.uint8) + shift
            pil_image = Image.merge(
                'HSV', (Image.fromarray(np_h, 'L'), s, v)).convert('RGB')
            return np.array(pil_image, dtype=img.dtype)[..., ::-1]
        if backend != 'cv2':
            # raises the upstream ValueError
            return original(img, hue_factor, backend=backend)
        import cv2
        h, s, v = cv2.split(
            cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL))
        h = h.astype(np.uint8) + shift
        return cv2.cvtColor(cv2.merge([h, s, v]),
                            cv2.COLOR_HSV2BGR_FULL).astype(img.dtype)

    adjust_hue.__doc__ = original.__doc__
    adjust_hue.__wrapped__ = original
    for module in (mmcv, mmcv.image, photometric):
        if getattr(module, 'adjust_hue', None) is original:
            module.adjust_hue = adjust_hue


def run_mmcv_cpu_ops_in_fp32() -> None:
    """Run mmcv's CPU ``nms`` and ``RoIAlign`` in fp32 when given bf16/fp16
    tensors.

    Breaks on: mmcv 2.1.0 (its CPU kernels dispatch float/double only) with CPU
    autocast, which mmengine's ``AmpOptimWrapper`` uses on a CPU-only machine
    (see ``enable_cpu_amp_optim_wrapper``): RPN proposals reach ``nms`` and FPN
    features reach ``RoIAlign`` as bf16. Fix: on CPU only, ``NMSop.forward``
    casts boxes and scores to fp32 (it returns indices, so ``nms`` still
    returns dets in the input dtype) and ``RoIAlign.forward`` computes in fp32
    and casts the result back to the features' dtype (all casts differentiable;
    mmdet writes it into a buffer of that dtype). GPU and fp32 calls are
    unchanged.
    """
    if (not version_in('mmcv', max_version='2.1.0')
            or not once('run_mmcv_cpu_ops_in_fp32')):
        return
    try:
        from mmcv.ops import RoIAlign
        from mmcv.ops.nms import NMSop
    except ImportError:  # mmcv without compiled ops: nothing to fix
        return
    low = (torch.bfloat16, torch.float16)

    def needs_fp32(*tensors):
        return any(t.device.type == 'cpu' and t.dtype in low for t in tensors)

    nms_forward = NMSop.forward

    def nms_fp32(ctx, bboxes, scores, *args):
        if needs_fp32(bboxes, scores):
            bboxes, scores = bboxes.float(), scores.float()
        return nms_forward(ctx, bboxes, scores, *args)

    roi_align_forward = RoIAlign.forward

    def roi_align_fp32(self, input, rois):
        if needs_fp32(input, rois):
            with torch.autocast('cpu', enabled=False):
                out = roi_align_forward(self, input.float(), rois.float())
            # callers index-put it into input-dtype buffers
            return out.to(input.dtype)
        return roi_align_forward(self, input, rois)

    nms_fp32.__wrapped__ = nms_forward
    roi_align_fp32.__wrapped__ = roi_align_forward
    NMSop.forward = staticmethod(nms_fp32)
    RoIAlign.forward = roi_align_fp32
