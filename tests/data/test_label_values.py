"""Label values with gaps: declared values <-> class indices (channel k = k-th smallest value)."""

import numpy as np
import pytest

from orthodiff_auto.data.label_values import label_values, to_class_indices, to_label_values


def test_gapped_values_become_consecutive_indices_and_back():
    values = label_values({"box": 5, "background": 0, "ball": 1})
    assert values == (0, 1, 5)
    label = np.array([[0, 1], [5, 9]], dtype=np.uint8)  # 9: the ignore label
    indices = to_class_indices(label, values, ignore_label=9)
    np.testing.assert_array_equal(indices, [[0, 1], [2, 9]])
    np.testing.assert_array_equal(to_label_values(indices, values), label)


def test_consecutive_values_are_their_own_indices():
    label = np.array([0, 2, 1, 2], dtype=np.uint8)
    np.testing.assert_array_equal(to_class_indices(label, (0, 1, 2)), label)


def test_undeclared_value_is_named():
    with pytest.raises(ValueError, match=r"\[3\] are not declared"):
        to_class_indices(np.array([0, 1, 3, 5]), (0, 1, 5))


def test_large_values_give_uint16_labels():
    out = to_label_values(np.array([0, 1, 2]), (0, 1, 300))
    assert out.dtype == np.uint16 and out.tolist() == [0, 1, 300]
