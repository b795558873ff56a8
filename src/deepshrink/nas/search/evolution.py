"""Evolution over genomes (one level index per gene): seeded sampling, tournament selection,
uniform crossover, one-level mutation, elitism, and repair of candidates over the budget.

Pure functions of a `random.Random`; each generation draws from its own generator seeded by
(seed, generation), so a resumed search makes exactly the draws an uninterrupted one makes."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from deepshrink.nas.search.config import EvolutionConfig

Genome = tuple[int, ...]
Cost = Callable[[Genome], float]
Rank = Callable[[Genome], tuple]  # larger is better


def generation_rng(seed: int, generation: int) -> random.Random:
    # str seeds are hashed with SHA-512: stable across processes, unlike hash().
    return random.Random(f"deepshrink.search:{seed}:{generation}")


def random_genome(rng: random.Random, levels: Sequence[int]) -> Genome:
    return tuple(rng.randrange(n) for n in levels)


def mutate(genome: Genome, rng: random.Random, levels: Sequence[int], rate: float) -> Genome:
    """Each gene moves one level up or down with probability `rate` (staying in range)."""
    out = list(genome)
    for i, n in enumerate(levels):
        if n > 1 and rng.random() < rate:
            step = rng.choice((-1, 1)) if 0 < out[i] < n - 1 else (1 if out[i] == 0 else -1)
            out[i] += step
    return tuple(out)


def crossover(a: Genome, b: Genome, rng: random.Random) -> Genome:
    """Uniform crossover: each gene from either parent."""
    return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))


def tournament(population: Sequence[Genome], rank: Rank, rng: random.Random, size: int) -> Genome:
    """The best of `size` members drawn with replacement."""
    drawn = [population[rng.randrange(len(population))] for _ in range(size)]
    return max(drawn, key=rank)


def repair(genome: Genome, rng: random.Random, levels: Sequence[int], cost: Cost, limit: float) -> Genome | None:
    """Prune more, one random gene by one level at a time, until `cost` is within `limit`;
    None when even every gene at its last level is over."""
    out = list(genome)
    while cost(tuple(out)) > limit:
        open_genes = [i for i, n in enumerate(levels) if out[i] < n - 1]
        if not open_genes:
            return None
        out[rng.choice(open_genes)] += 1
    return tuple(out)


def initial_population(rng: random.Random, levels: Sequence[int], size: int, seeds: Sequence[Genome],
                       fix: Callable[[Genome], Genome | None]) -> list[Genome]:
    """`seeds` (e.g. uniform ratios) first, then random genomes, each repaired, without repeats."""
    population: list[Genome] = []
    for genome in seeds:
        fixed = fix(genome)
        if fixed is not None and fixed not in population and len(population) < size:
            population.append(fixed)
    _fill(population, size, lambda: fix(random_genome(rng, levels)))
    return population


def next_generation(population: Sequence[Genome], rank: Rank, rng: random.Random, levels: Sequence[int],
                    cfg: EvolutionConfig, fix: Callable[[Genome], Genome | None]) -> list[Genome]:
    """Elites unchanged, then children of tournament-selected parents, mutated and repaired."""
    ordered = sorted(population, key=rank, reverse=True)
    children = list(dict.fromkeys(ordered[: cfg.elite]))

    def child() -> Genome | None:
        mother = tournament(population, rank, rng, cfg.tournament)
        if rng.random() < cfg.crossover:
            mother = crossover(mother, tournament(population, rank, rng, cfg.tournament), rng)
        return fix(mutate(mother, rng, levels, cfg.mutation))

    _fill(children, len(population), child)
    return children


def _fill(population: list[Genome], size: int, make: Callable[[], Genome | None], tries: int = 50) -> None:
    """Append distinct genomes from `make` until `size`; after `tries` misses in a row accept repeats
    (a tiny space may hold fewer distinct feasible genomes than the population)."""
    misses = 0
    while len(population) < size:
        genome = make()
        if genome is not None and (genome not in population or misses >= tries):
            population.append(genome)
            misses = 0
        else:
            misses += 1
            if misses > 10 * tries:
                raise RuntimeError("could not make a feasible genome")  # repair makes this unreachable
