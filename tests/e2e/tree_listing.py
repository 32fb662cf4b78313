#!/usr/bin/env python3
# The listing the image tests compare: one line per entry below ROOT (and ROOT itself as "."):
# name, mode (type included), owner, mtime in ns, and for non-directories size and link count,
# symlink target, device number, sha256 of regular files, xattrs (POSIX ACLs included) in hex.
# Directories' sizes and link counts are the filesystem's bookkeeping and are left out.
# Usage: tree_listing.py ROOT [SKIP...]   (SKIP: relative paths left out with all below them)
# Options (anywhere after ROOT, each repeatable; GLOB is an fnmatch pattern on the relative
# path, `*` matching `/` too):
#   --ignore GLOB     entries matching GLOB are left out with all below them
#   --no-mtime GLOB   entries matching GLOB are listed with "-" for their mtime
#   --links           a non-directory with more than one link also shows "link=FIRST", FIRST
#                     being the first (sorted) listed path of its inode: the hardlink structure
import fnmatch, hashlib, os, stat, sys
root = sys.argv[1]
skip, ignore, no_mtime, links = set(), [], [], False
args = iter(sys.argv[2:])
for a in args:
    if a == "--ignore":
        ignore.append(next(args))
    elif a == "--no-mtime":
        no_mtime.append(next(args))
    elif a == "--links":
        links = True
    else:
        skip.add(a)
def matches(rel, globs):
    return any(fnmatch.fnmatchcase(rel, g) for g in globs)
first_of_inode = {}
def line(rel):
    p = os.path.join(root, rel)
    st = os.lstat(p)
    kind = stat.S_IFMT(st.st_mode)
    mtime = "-" if matches(rel, no_mtime) else str(st.st_mtime_ns)
    f = [rel, oct(st.st_mode), str(st.st_uid), str(st.st_gid), mtime]
    if kind != stat.S_IFDIR:
        f += [str(st.st_size), str(st.st_nlink)]
        if links and st.st_nlink > 1:
            f.append("link=" + first_of_inode[(st.st_dev, st.st_ino)])
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
rels = ["."]
for d, dirs, files in os.walk(root):
    for name in sorted(dirs + files):
        rel = os.path.relpath(os.path.join(d, name), root)
        if rel in skip or any(rel.startswith(s + "/") for s in skip):
            continue
        if matches(rel, ignore) or any(matches(a, ignore) for a in
                                       (rel[:i] for i, c in enumerate(rel) if c == "/")):
            continue
        rels.append(rel)
if links:
    for rel in sorted(rels):
        st = os.lstat(os.path.join(root, rel))
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            first_of_inode.setdefault((st.st_dev, st.st_ino), rel)
out = [line(rel) for rel in rels]
print("\n".join(sorted(out)))
