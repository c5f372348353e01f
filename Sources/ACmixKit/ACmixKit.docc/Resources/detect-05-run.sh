swift build -c release
.build/release/detect-folder retinanet-shapes \
    ../acmix-kit/work_dirs/retinanet_acmix_resnet26_fpn_shapes/latest.safetensors ../acmix-kit/data/shapes/images/validation
# val_000000.jpg circle 0.9731 12.4 40.2 61.9 88.0
# ...
