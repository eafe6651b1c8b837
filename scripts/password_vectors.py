# Generates pbkdf2_elixir-format and bcrypt test vectors (stdlib hashlib + PyPI bcrypt).
import base64, hashlib, os, sys, bcrypt
def ab64(b):  # pbkdf2_elixir / passlib "adapted base64": '.' for '+', no padding
    return base64.b64encode(b).decode().rstrip("=").replace("+", ".")
def pbkdf2(pw, salt, rounds, digest="sha512"):
    n = 64 if digest == "sha512" else 32
    dk = hashlib.pbkdf2_hmac(digest, pw.encode(), salt, rounds, n)
    return f"$pbkdf2-{digest}${rounds}${ab64(salt)}${ab64(dk)}"
salt = bytes(range(16))
print(pbkdf2("hunter2", salt, 1000))
print(pbkdf2("hunter2", b"saltsaltsaltsalt", 1000, "sha256"))
print(pbkdf2("phoenix", os.urandom(16), 160000))
print(pbkdf2("phoenix", os.urandom(16), 160000))
print(pbkdf2("phoenix", os.urandom(16), 160000))
print(pbkdf2("no user has this password", os.urandom(16), 160000))
print(bcrypt.hashpw(b"hunter2", bcrypt.gensalt(rounds=4, prefix=b"2b")).decode())
