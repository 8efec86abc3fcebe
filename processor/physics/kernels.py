"""Compiled (numba) per-event loops of the chunk physics, on flat arrays plus offsets.

Every kernel reproduces the vectorised numpy/awkward code it replaces bit for bit: the same
IEEE operations (``+ - * /`` and ``sqrt``, correctly rounded in both) in the same order, no
``fastmath`` (no reassociation, no fused multiply-add), squares written as ``x * x`` (what
numpy's ``x ** 2`` computes), ``np.maximum(x, 0.0)`` spelled out with its NaN behaviour.
Transcendental functions (cos, sin, sinh, exp, hypot) stay in numpy, outside the kernels: numba
would call other implementations that may round differently.

A collection of jagged objects is given as ``offsets`` (int64, n_events + 1, starting at 0)
and one flat array per field. The machine code is cached on disk (:func:`_kernel`): the first chunk of a
fresh installation compiles (seconds), later processes load it.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def native(array, dtype) -> np.ndarray:
    """``array`` as a writable, C-contiguous, native ``dtype`` array (copied only if needed):
    the one array type the kernels are compiled for (a read-only or strided view of a file
    buffer would be another specialisation, compiled again)."""
    out = np.asarray(array, dtype=dtype)
    if out.flags.c_contiguous and out.flags.writeable and out.dtype.isnative:
        return out
    return np.array(out, dtype=np.dtype(dtype).newbyteorder("="), order="C")


def _kernel(fn):
    """``njit`` with the machine code cached on disk (numba's cache: beside this file, else
    the user cache directory, or ``NUMBA_CACHE_DIR``); compiled per process when no cache
    location is writable (an installed package on a read-only file system)."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(nogil=True)(fn)


@_kernel
def _nonneg(x):  # np.maximum(x, 0.0): x when x >= 0 or NaN (maximum propagates NaN), else 0.0
    if x >= 0.0 or x != x:
        return x
    return 0.0


@_kernel
def mass_of(px, py, pz, e):
    """sqrt(max(E^2 - (px^2 + py^2 + pz^2), 0)) in numpy's operation order."""
    return np.sqrt(_nonneg(e * e - (px * px + py * py + pz * pz)))


@_kernel
def select_sort(offsets, pt, keep):
    """Per event, the kept objects in descending pT, ties in input order (a stable sort).

    Returns (index of each selected object into the flat input, selected count per event).
    NaN pT is never kept by the callers (``pt > pt_min`` is false for NaN).
    """
    n = len(offsets) - 1
    total = 0
    for j in range(offsets[n] - offsets[0]):
        if keep[offsets[0] + j]:
            total += 1
    out = np.empty(total, np.int64)
    counts = np.zeros(n, np.int64)
    pos = 0
    for i in range(n):
        start = pos
        for j in range(offsets[i], offsets[i + 1]):
            if keep[j]:
                k = pos
                pj = pt[j]
                while k > start and pt[out[k - 1]] < pj:  # after every equal or larger pT
                    out[k] = out[k - 1]
                    k -= 1
                out[k] = j
                pos += 1
        counts[i] = pos - start
    return out, counts


@_kernel
def suffix_sums(offsets, x):
    """``out[j]`` = x[j] + x[j+1] + ... + x[last of its event], summed from the last object
    (``x[last] + 0.0`` first), like the column-wise suffix sums over a zero-padded table."""
    out = np.empty(len(x), np.float64)
    for i in range(len(offsets) - 1):
        acc = 0.0
        for j in range(offsets[i + 1] - 1, offsets[i] - 1, -1):
            acc = x[j] + acc
            out[j] = acc
    return out


@_kernel
def suffix_sums4(offsets, px, py, pz, e, out, base):
    """:func:`suffix_sums` of the four components at once, into ``out[c, base + j]``."""
    for i in range(len(offsets) - 1):
        ax = 0.0
        ay = 0.0
        az = 0.0
        ae = 0.0
        for j in range(offsets[i + 1] - 1, offsets[i] - 1, -1):
            ax = px[j] + ax
            ay = py[j] + ay
            az = pz[j] + az
            ae = e[j] + ae
            out[0, base + j] = ax
            out[1, base + j] = ay
            out[2, base + j] = az
            out[3, base + j] = ae


@_kernel
def z_pairs(off_e, off_m, px, py, pz, e, q, mass_gev, window_gev):
    """Greedy Z -> ll pairing of every event (leptons: electrons then muons, one flat array).

    ``off_e``/``off_m`` index the electrons/muons of each event in the flat arrays (the muons
    after all electrons). Candidates are same-flavour pairs (i < j) with q_i q_j < 0 and
    |m - mass_gev| < window_gev; in order of distance, then electrons before muons, then pair
    index (a stable sort of the e-then-mu, i-then-j enumeration), each is taken if both its
    leptons are still free. Returns (first, second lepton of each Z in event order, taken in
    the order chosen; Z count per event; used flag of each lepton).
    """
    n = len(off_e) - 1
    n_lep = len(px)
    used = np.zeros(n_lep, np.bool_)
    n_z = np.zeros(n, np.int64)
    max_pairs = 0
    max_z = 0
    for i in range(n):
        ne = off_e[i + 1] - off_e[i]
        nm = off_m[i + 1] - off_m[i]
        max_pairs = max(max_pairs, ne * (ne - 1) // 2 + nm * (nm - 1) // 2)
        max_z += ne // 2 + nm // 2
    dm_buf = np.empty(max_pairs, np.float64)
    a_buf = np.empty(max_pairs, np.int64)
    b_buf = np.empty(max_pairs, np.int64)
    first = np.empty(max_z, np.int64)
    second = np.empty(max_z, np.int64)
    n_out = 0
    for i in range(n):
        n_cand = 0
        for f in range(2):
            lo = off_e[i] if f == 0 else off_m[i]
            hi = off_e[i + 1] if f == 0 else off_m[i + 1]
            for a in range(lo, hi):
                for b in range(a + 1, hi):
                    m = mass_of(px[a] + px[b], py[a] + py[b], pz[a] + pz[b], e[a] + e[b])
                    dm = np.abs(m - mass_gev)
                    if q[a] * q[b] < 0 and dm < window_gev:
                        k = n_cand
                        while k > 0 and dm_buf[k - 1] > dm:  # stable insertion by distance
                            dm_buf[k] = dm_buf[k - 1]
                            a_buf[k] = a_buf[k - 1]
                            b_buf[k] = b_buf[k - 1]
                            k -= 1
                        dm_buf[k] = dm
                        a_buf[k] = a
                        b_buf[k] = b
                        n_cand += 1
        for k in range(n_cand):
            a = a_buf[k]
            b = b_buf[k]
            if not used[a] and not used[b]:
                used[a] = True
                used[b] = True
                first[n_out] = a
                second[n_out] = b
                n_out += 1
                n_z[i] += 1
    return first[:n_out], second[:n_out], n_z, used


_FIELD = 5  # bits per type in an event's count code: 4 for the count (<= 15), 1 guard bit
_GUARD = 16


@_kernel
def _count_codes(idx, n_sel):
    """Per valid event: the counts packed 5 bits per type, each field's guard bit set; and
    the set of types present (bit t)."""
    codes = np.zeros(len(idx), np.int64)
    present = np.zeros(len(idx), np.int64)
    for r in range(len(idx)):
        code = 0
        bits = 0
        for t in range(n_sel.shape[1]):
            n = n_sel[idx[r], t]
            if n < 0 or n > 15:
                raise ValueError("object count above 15 in a final state")
            code |= (n | _GUARD) << (_FIELD * t)
            if n > 0:
                bits |= 1 << t
        codes[r] = code
        present[r] = bits
    return codes, present


@_kernel
def _pattern_codes(pat_types, pat_used, pat_k, n_types):
    """Per pattern: (the used counts packed like the event codes, the mask of its count fields,
    the mask of its guard bits); and the patterns grouped by their set of types (bit t for
    type t): group g's patterns are ``members[first[g]:first[g + 1]]``, ascending."""
    n_pat = len(pat_k)
    value = np.zeros(n_pat, np.int64)
    mask = np.zeros(n_pat, np.int64)
    guard = np.zeros(n_pat, np.int64)
    group = np.zeros(n_pat, np.int64)
    for p in range(n_pat):
        for k in range(pat_k[p]):
            shift = _FIELD * pat_types[p, k]
            value[p] |= pat_used[p, k] << shift
            mask[p] |= (_GUARD - 1) << shift
            guard[p] |= _GUARD << shift
            group[p] |= 1 << pat_types[p, k]
    first = np.zeros((1 << n_types) + 1, np.int64)
    for p in range(n_pat):
        first[group[p] + 1] += 1
    for g in range(1 << n_types):
        first[g + 1] += first[g]
    fill = first[:-1].copy()
    members = np.empty(n_pat, np.int64)
    for p in range(n_pat):
        members[fill[group[p]]] = p
        fill[group[p]] += 1
    return value, mask, guard, first, members


@_kernel
def _applies(code, value, mask, guard, leading_only):
    """Whether a pattern applies: n_t == u_t (leading-only) or n_t >= u_t for each of its types.

    ``code - value`` subtracts u_t <= 15 from 16 + n_t per field without borrowing from the
    next field; the guard bit survives exactly when n_t >= u_t.
    """
    if leading_only:
        return (code & mask) == value
    return ((code - value) & guard) == guard


@_kernel
def combination_masses(
    idx, n_sel, starts, spx, spy, spz, se, pat_types, pat_used, pat_k, leading_only
):
    """Mass of every pattern in every valid event, pattern by pattern (events ascending).

    ``n_sel[i, t]`` is the count of type t in event i, ``starts[i, t]`` where its objects'
    suffix sums begin in the flat ``spx, spy, spz, se`` (all types concatenated). A pattern
    sums, type by type in its order starting from 0.0, the suffix sum at object n_t - u_t.
    Returns (event, pattern, mass).
    """
    n_pat = len(pat_k)
    n_types = n_sel.shape[1]
    codes, present = _count_codes(idx, n_sel)
    value, mask, guard, first, members = _pattern_codes(pat_types, pat_used, pat_k, n_types)
    # a pattern needs n_t >= u_t >= 1: only the groups of subsets of the present types
    # pass 1 counts each pattern's events, pass 2 writes each mass at its final place
    # (pattern by pattern, events ascending); growing buffers would cost compile time
    pos = np.zeros(n_pat, np.int64)
    for r in range(len(idx)):
        full = present[r]
        sub = full
        while sub:
            for m in range(first[sub], first[sub + 1]):
                p = members[m]
                if _applies(codes[r], value[p], mask[p], guard[p], leading_only):
                    pos[p] += 1
            sub = (sub - 1) & full
    total = 0
    for p in range(n_pat):
        c = pos[p]
        pos[p] = total
        total += c
    ev = np.empty(total, np.int64)
    pat = np.empty(total, np.int32)
    mass = np.empty(total, np.float64)
    for r in range(len(idx)):
        i = idx[r]
        full = present[r]
        sub = full
        while sub:
            for m in range(first[sub], first[sub + 1]):
                p = members[m]
                if not _applies(codes[r], value[p], mask[p], guard[p], leading_only):
                    continue
                tx = 0.0
                ty = 0.0
                tz = 0.0
                te = 0.0
                for k in range(pat_k[p]):
                    t = pat_types[p, k]
                    j = starts[i, t] + n_sel[i, t] - pat_used[p, k]
                    tx = tx + spx[j]
                    ty = ty + spy[j]
                    tz = tz + spz[j]
                    te = te + se[j]
                w = pos[p]
                ev[w] = i
                pat[w] = p
                mass[w] = mass_of(tx, ty, tz, te)
                pos[p] = w + 1
            sub = (sub - 1) & full
    return ev, pat, mass


@_kernel
def three_lepton_pairs(idx, off_e, off_m, px, py, pz, e, q, lookup):
    """The pair masses (0, 1), (0, 2), (1, 2) of the three leptons (e then mu) of each event
    in ``idx``; pair k's entries first, events ascending. ``lookup[k, n_e, os]`` is the
    pattern of pair k in an event with n_e electrons (os: 1 when q_a q_b < 0)."""
    n = len(idx)
    ev = np.empty(3 * n, np.int64)
    pat = np.empty(3 * n, np.int32)
    mass = np.empty(3 * n, np.float64)
    lep = np.empty(3, np.int64)
    for r in range(n):
        i = idx[r]
        ne = off_e[i + 1] - off_e[i]
        for s in range(3):
            lep[s] = off_e[i] + s if s < ne else off_m[i] + s - ne
        for k in range(3):
            a = lep[0] if k < 2 else lep[1]
            b = lep[1] if k == 0 else lep[2]
            w = k * n + r
            ev[w] = i
            os_pair = 1 if q[a] * q[b] < 0 else 0
            pat[w] = lookup[k, ne, os_pair]
            mass[w] = mass_of(px[a] + px[b], py[a] + py[b], pz[a] + pz[b], e[a] + e[b])
    return ev, pat, mass


@_kernel
def two_lepton_product(off_e, off_m, q):
    """Per event: q1 * q2 of its electrons then muons when there are exactly two, else NaN
    (and a flag of the events with exactly two)."""
    n = len(off_e) - 1
    two = np.zeros(n, np.bool_)
    prod = np.zeros(n, np.float64)
    for i in range(n):
        ne = off_e[i + 1] - off_e[i]
        nm = off_m[i + 1] - off_m[i]
        if ne + nm != 2:
            continue
        two[i] = True
        a = off_e[i] if ne > 0 else off_m[i]
        b = off_e[i] + 1 if ne == 2 else off_m[i] + (1 if ne == 0 else 0)
        prod[i] = 1.0 * q[a] * q[b]
    return two, prod
