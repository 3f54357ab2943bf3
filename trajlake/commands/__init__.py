"""Subcommands of `trajlake`, grouped by what they are about; `trajlake.cli` wires them up."""
