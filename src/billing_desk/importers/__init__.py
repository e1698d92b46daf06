"""File readers: each turns a file into domain records and nothing else."""
