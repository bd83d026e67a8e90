"""nas area (see its issue); stands on shared/ only."""
