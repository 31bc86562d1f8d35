"""Where experience comes from: datasets, environments, and the replay that serves them to the agent."""
