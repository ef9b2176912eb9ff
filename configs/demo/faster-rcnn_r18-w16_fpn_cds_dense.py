# The shapes demo's tiny Faster R-CNN with instance-level CDS on P2 alone, on
# a dense one-class scene: the generated dense set (data/dense: 15-30 small
# blobs of one class per 320 px image, 15-34 px, partly occluded, over
# unannotated clutter), a stand-in for aerial tree detection. Build it with
#   python tools/dataset_converters/make_dense_coco.py data/dense
# (200 train / 50 val images). With one class, the instance head runs SimCLR
# over boxes (SupCon would have no negatives); benchmarks/det_grad_norms.py
# measures why that and the CDS weight warm-up matter here.
_base_ = './faster-rcnn_r18-w16_fpn_cds_shapes.py'

data_root = '{{$CDS_DATA_ROOT:data/dense}}'
metainfo = dict(classes=('object', ))
# No image-level head: with it (both weights 0.01) test mAP was 0.7 below the
# baseline's on 3 seeds, without it at the baseline's level
# (benchmarks/README.md, "Dense one-class scenes"). Weight 0.01, not the
# shapes demo's 0.1: under AdamW the CDS gradient in the shared backbone +
# neck shrinks the detector's normalised step there
# (benchmarks/det_grad_norms.py --adam-stats); with both heads, 0.01 was best
# on val at 24 epochs among 0.01 / 0.02 / 0.05 / 0.1.
model = dict(
    detector=dict(roi_head=dict(bbox_head=dict(num_classes=1))),
    cds_head=None,
    instance_head=dict(loss_weight=0.01))
train_pipeline = _base_.train_pipeline
train_pipeline[2] = dict(type='Resize', scale=(320, 320), keep_ratio=True)
test_pipeline = _base_.test_pipeline
test_pipeline[1] = dict(type='Resize', scale=(320, 320), keep_ratio=True)
train_dataloader = dict(
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/instances_val.json')
test_evaluator = val_evaluator
# 50 iterations an epoch at batch 4; at 12 epochs every run still improved
train_cfg = dict(max_epochs=24, val_interval=4)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=True, milestones=[20], gamma=0.1),
]
