"""The fault suite (`make faults`): scripts against the real local platform that inject faults and
count what happened to every request: sent / acknowledged / ok / lost / duplicated, plus 5xx."""
