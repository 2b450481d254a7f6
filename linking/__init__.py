"""Record linking at go-live: which Salesforce Account is which Sage 100 customer, which Product2
which CI_Item; suggested by a Fellegi-Sunter model, decided automatically above a threshold or by
an operator (`sagesf link ...`), kept on the compacted topic link.state.v1 (sagesf/link_state.py).

It reads both sides' records from customer.v1 and item.v1 and writes commands, so it needs no
connector; the processors read its state to leave records waiting for review alone.
"""
