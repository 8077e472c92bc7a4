"""The category tree (诉求分类), deadline tiers (时限) and default handling-unit kinds."""
