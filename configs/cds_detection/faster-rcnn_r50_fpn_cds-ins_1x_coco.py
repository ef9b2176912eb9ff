# Both heads: image-level CDS on P2-P5 and instance-level CDS on P2 and P3,
# each at 0.01. On the dense one-class set this cost 0.7 test mAP against the
# baseline (3 seeds; benchmarks/README.md, "Dense one-class scenes").
_base_ = './faster-rcnn_r50_fpn_cds-img_1x_coco.py'
model = dict(
    instance_head=dict(
        _base_.fpn_instance_head,
        _delete_=True,  # the image-level config sets it to None
        taps=['neck.fpn_convs.0', 'neck.fpn_convs.1'],
        in_channels=[256, 256]))
