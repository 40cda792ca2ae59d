"""The distortion functions, one module per KADID-10k group.

Each function has the form ``f(img, strength, rng, **options) -> img`` on sRGB
(H, W, 3) float32 images in [0, 1]; the level -> strength tables and the options
live in ``perceptiq.data.synthetic.catalogue``, which also gives every type the
``(img, level, rng)`` call form.
"""
