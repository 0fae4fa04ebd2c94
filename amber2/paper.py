"""The paper's hyperparameters, defined once (Section 3.3: "lambda_RAI = 1.0 and lambda_MAI in {0.3, 0.5, 0.7},
selected via validation, and the sharpness parameter kappa in Eq. 5 is tuned over {2, 4, 8}")."""
from __future__ import annotations

LAMBDA_RAI = 1.0
LAMBDA_MAI_GRID = (0.3, 0.5, 0.7)
KAPPA_GRID = (2.0, 4.0, 8.0)
# Where one value is needed without a grid search (the loss's default, the Learn tab, a reading of a model
# trained without Eq. 5): the middle of each grid.
LAMBDA_MAI_DEFAULT = 0.5
KAPPA_DEFAULT = 4.0
