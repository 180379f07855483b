"""`make faults`: the fault suite. Every case ends in a table row: items, scored, errors, missing, duplicated, collateral."""
