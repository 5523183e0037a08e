"""The kinds of the critic's job rows: the chain's three links, named once for every module."""

TRAIN, EVALUATE, SCORE = "critic_train", "critic_evaluate", "critic_score"
