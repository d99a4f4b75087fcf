import pyro
import pytest
import torch

# One torch thread per test process: the CI machine has two cores, and torch's default
# thread pool contends badly with anything else running there.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
