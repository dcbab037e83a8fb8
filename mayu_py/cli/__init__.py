"""Command-line entry points: `mayu` (serve, agent, lab, images, pki) and `mayuctl`."""
