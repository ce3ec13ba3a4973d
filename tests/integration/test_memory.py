"""The mount daemon's memory stays bounded while large files are copied in
(issue 11, defect 7): its peak RSS with default options stays under
300 MiB. Sanitizer builds keep freed memory resident, so this test runs
the binary named by BLOCKFS_RSS_BIN (contrib/run-tests.sh sets it to the
plain build) and is skipped without one."""

import os
import subprocess

import pytest

import util
from util import MiB

RSS_LIMIT = 300 * MiB


def peak_rss(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise AssertionError(f'no VmHWM for pid {pid}')


def test_rss_bounded_while_copying(tmp_path, monkeypatch):
    rss_bin = os.environ.get('BLOCKFS_RSS_BIN')
    if not rss_bin:
        pytest.skip('BLOCKFS_RSS_BIN (a build without sanitizers) not set')
    monkeypatch.setenv('BLOCKFS_BIN', rss_bin)
    node = util.create_cluster(tmp_path / 'c')
    m = util.Mount(node, tmp_path / 'mnt', tmp_path / 'mount.log')
    m.start()
    try:
        mb = max(util.env_int('BLOCKFS_TEST_BIG_MB', 1024), 512)
        # Random bytes (nothing deduplicates), written as cp would.
        subprocess.run(
            f'head -c {mb}M /dev/urandom | '
            f'dd of={m.mnt}/f bs=1M iflag=fullblock conv=fsync status=none',
            shell=True, check=True, timeout=900)
        assert os.path.getsize(os.path.join(m.mnt, 'f')) == mb * MiB
        peak = peak_rss(m.pid)
        assert peak < RSS_LIMIT, \
            f'daemon peak RSS {peak / MiB:.0f} MiB copying {mb} MiB'
    finally:
        m.stop()
