"""metalearn area (see its issue); stands on shared/ only."""
