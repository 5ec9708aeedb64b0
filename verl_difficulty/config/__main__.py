from verl_difficulty.config import CONFIG_DIR

print(CONFIG_DIR)
