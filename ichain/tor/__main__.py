"""``python -m ichain.tor --info net.json``: run a private Tor network until interrupted (see testnet.main)."""

from ichain.tor.testnet import main

main()
