"""The business's own rules, with no database and no chat: money and dates as people write them,
working days, late fees, the statute of limitations, reading import files. The bottom layer:
storage and the bot both use it, it uses neither."""
