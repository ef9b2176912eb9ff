# The paper's Table 4 setting for RetinaNet (COCO box AP 36.5 -> 37.3): a
# plain RetinaNet whose ResNet-50 starts from an ImageNet classifier trained
# with CDS. Pretrain and export as in faster-rcnn_r50_fpn_cds-pretrained_1x_
# coco.py (its header has the commands), then
#   bash tools/dist_train.sh \
#       configs/cds_detection/retinanet_r50_fpn_cds-pretrained_1x_coco.py 8
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            prefix='backbone.',
            checkpoint='work_dirs/resnet50_cds_export/backbone.pth')))
# the data folder; CDS_DATA_ROOT=DIR in the environment overrides it
data_root = '{{$CDS_DATA_ROOT:data/coco}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root +
                     '/annotations/instances_val2017.json')
test_evaluator = val_evaluator
