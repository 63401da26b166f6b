import pytest

from src.diffuir.schedule import residual_schedule, sampling_timesteps, shared_coefficient


def test_schedule_matches_released_values():
    s = residual_schedule()
    assert s["alpha_bar"][0].item() == pytest.approx(5e-5, rel=1e-3)
    assert s["alpha_bar"][-1].item() == pytest.approx(0.99365, abs=1e-5)
    assert s["beta_bar"][0].item() == pytest.approx(0.01, rel=1e-3)
    assert s["beta_bar"][-1].item() == pytest.approx(0.99998, abs=1e-5)
    assert s["delta_bar"][-1].item() == pytest.approx(0.9005, abs=1e-4)
    # ᾱ + √ā = 1 and β̄² = 1 − ā tie the two arrays together
    assert ((1 - s["alpha_bar"]) ** 2 + s["beta_bar"] ** 2 - 1).abs().max() < 1e-5
    assert (s["alpha_bar"].diff() > 0).all() and (s["delta_bar"].diff() > 0).all()


def test_delta_bar_is_clipped_and_shared_coefficient():
    assert residual_schedule(delta_end=2e-3)["delta_bar"][-1].item() == 1.0
    assert shared_coefficient(1.8e-3) == pytest.approx(0.9005)
    assert shared_coefficient(2.0e-4) == pytest.approx(0.1005)
    assert shared_coefficient(5e-3) == 1.0


def test_sampling_times_of_released_sampler():
    assert sampling_timesteps(3) == [999, 665, 332, -1]
    assert sampling_timesteps(1) == [999, -1]
    assert len(sampling_timesteps(10)) == 11
    with pytest.raises(ValueError, match="sampling steps"):
        sampling_timesteps(0)
