"""The geometry inside the saved model: black side padding trimmed, any input size resized."""

import numpy as np
import pytest

from search.model.preprocess import BLACK, Prepare, prepare


def _padded(height=60, width=80, left=20, right=10, value=200):
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, left:width - right] = value
    image[:, left, 0] = 255  # a marker on the first column of content
    return image


def test_auto_crop_trims_exactly_the_black_columns():
    image = _padded()
    out = np.asarray(prepare(image[None], (60, 50), crop="auto"))[0]
    assert out.shape == (60, 50, 3) and out.dtype == np.float32
    assert out[:, 0, 0].min() == pytest.approx(255)  # the content's first column is column 0
    assert out.min() >= 199  # no padding left


def test_images_in_one_batch_are_cropped_each_by_its_own_borders():
    batch = np.stack([_padded(left=20, right=10), _padded(left=0, right=40)])
    out = np.asarray(prepare(batch, (60, 50), crop="auto"))
    assert out.min() >= 199


def test_an_all_black_image_keeps_its_full_width():
    black = np.full((1, 40, 40, 3), BLACK - 1, dtype=np.uint8)
    out = np.asarray(prepare(black, (32, 32), crop="auto"))
    assert out.shape == (1, 32, 32, 3) and np.allclose(out, BLACK - 1)


def test_without_crop_the_image_is_only_resized():
    image = _padded()
    out = np.asarray(prepare(image[None], (30, 40), crop="none"))
    assert out.shape == (1, 30, 40, 3)
    assert out[0, :, :5].max() == 0  # the left padding is still there


def test_unknown_crop_is_refused():
    with pytest.raises(ValueError, match="crop must be none or auto"):
        prepare(np.zeros((1, 8, 8, 3)), (8, 8), crop="centre")


def test_the_layer_round_trips_its_config():
    layer = Prepare((96, 64), crop="auto")
    again = Prepare.from_config(layer.get_config())
    assert (again.size, again.crop) == ((96, 64), "auto")
    out = again(np.zeros((2, 120, 90, 3), dtype=np.uint8))
    assert tuple(out.shape) == (2, 96, 64, 3)
