"""Training the patch discriminator on cached features of normal and synthetic-defect patches."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from anomalens.methods.discriminator.model import PatchDiscriminator

ADAPTOR_LEARNING_RATE_FACTOR = 0.1
"""The adaptor learns this much slower than the discriminator (SimpleNet), so that it stays
near its identity start and the noise level keeps its meaning."""


@dataclass
class TrainingPatches:
    """Patch features to train on, each row tagged with the reference it comes from.

    Attributes:
        normal: (N, C) features of the references' patches.
        normal_owners: (N,) reference index of each normal row.
        defects: (M, C) features of patches covered by synthetic defects (M may be 0).
        defect_owners: (M,) reference index each synthetic image was made from.
    """

    normal: torch.Tensor
    normal_owners: torch.Tensor
    defects: torch.Tensor
    defect_owners: torch.Tensor

    def without(self, owners: list[int]) -> "TrainingPatches":
        """The rows of every reference but `owners`."""
        excluded = torch.tensor(owners)
        keep_normal = ~torch.isin(self.normal_owners, excluded)
        keep_defects = ~torch.isin(self.defect_owners, excluded)
        return TrainingPatches(
            self.normal[keep_normal],
            self.normal_owners[keep_normal],
            self.defects[keep_defects],
            self.defect_owners[keep_defects],
        )


def train(
    patches: TrainingPatches,
    hidden: int,
    noise_std: float,
    steps: int,
    batch_size: int,
    learning_rate: float,
    progress: bool = False,
) -> PatchDiscriminator:
    """A discriminator trained to give normal patches low and negatives high logits (binary
    cross-entropy, normal and negative halves weighted equally).

    Each step draws `batch_size` normal patches; the negatives are the same patches' adapted
    features plus Gaussian noise of standard deviation `noise_std` (SimpleNet) and, when there
    are any, as many synthetic-defect patches. Draws come from the global torch generator, so
    seeding it first makes training reproducible. The adaptor starts as the identity.
    """
    model = PatchDiscriminator(patches.normal.shape[1], hidden)
    with torch.no_grad():
        model.adaptor.weight.copy_(torch.eye(patches.normal.shape[1]))
        model.adaptor.bias.zero_()
    optimizer = torch.optim.Adam(
        [
            {
                "params": model.adaptor.parameters(),
                "lr": learning_rate * ADAPTOR_LEARNING_RATE_FACTOR,
            },
            {"params": model.discriminator.parameters()},
        ],
        lr=learning_rate,
    )
    model.train()
    for _ in tqdm(range(steps), desc="discriminator", unit="step", disable=not progress):
        normal = model.adaptor(patches.normal[torch.randint(len(patches.normal), (batch_size,))])
        negatives = [normal + noise_std * torch.randn_like(normal)]
        if len(patches.defects):
            drawn = patches.defects[torch.randint(len(patches.defects), (batch_size,))]
            negatives.append(model.adaptor(drawn))
        logits = model.discriminate(torch.cat([normal, *negatives]))
        normal_logits, negative_logits = logits[:batch_size], logits[batch_size:]
        loss = F.binary_cross_entropy_with_logits(
            normal_logits, torch.zeros_like(normal_logits)
        ) + F.binary_cross_entropy_with_logits(negative_logits, torch.ones_like(negative_logits))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
