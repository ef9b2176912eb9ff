_base_ = './retinanet_r50_fpn_cds_1x_coco.py'
model = dict(mode='off')
