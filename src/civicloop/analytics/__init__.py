"""Analytics: the three rates (三率), rankings and, later, the proactive findings (未诉先办)."""
