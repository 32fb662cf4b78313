#!/usr/bin/env python3
# The listing the image tests compare: one line per entry below ROOT (and ROOT itself as "."):
# name, mode (type included), owner, mtime in ns, and for non-directories size and link count,
# symlink target, device number, sha256 of regular files, xattrs (POSIX ACLs included) in hex.
# Directories' sizes and link counts are the filesystem's bookkeeping and are left out.
# Usage: tree_listing.py ROOT [SKIP...]   (SKIP: relative paths left out with all below them)
import hashlib, os, stat, sys
root = sys.argv[1]
skip = set(sys.argv[2:])
def line(rel):
    p = os.path.join(root, rel)
    st = os.lstat(p)
    kind = stat.S_IFMT(st.st_mode)
    f = [rel, oct(st.st_mode), str(st.st_uid), str(st.st_gid), str(st.st_mtime_ns)]
    if kind != stat.S_IFDIR:
        f += [str(st.st_size), str(st.st_nlink)]
    if stat.S_ISLNK(st.st_mode):
        f.append("-> " + os.readlink(p))
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        f.append("dev %d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
    if stat.S_ISREG(st.st_mode):
        with open(p, "rb") as fh:
            f.append(hashlib.file_digest(fh, "sha256").hexdigest() if hasattr(hashlib, "file_digest")
                     else hashlib.sha256(fh.read()).hexdigest())
    if not stat.S_ISLNK(st.st_mode):
        for name in sorted(os.listxattr(p, follow_symlinks=False)):
            f.append("%s=%s" % (name, os.getxattr(p, name, follow_symlinks=False).hex()))
    return " ".join(f)
out = [line(".")]
for d, dirs, files in os.walk(root):
    for name in sorted(dirs + files):
        rel = os.path.relpath(os.path.join(d, name), root)
        if rel in skip or any(rel.startswith(s + "/") for s in skip):
            continue
        out.append(line(rel))
print("\n".join(sorted(out)))
