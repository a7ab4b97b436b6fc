"""MacArray: the tile-stationary BR×BC multiply-accumulate array and its token loop.

A job (one tile) is held in the tile register for N cycles; in cycle n the activation slice
x[c·BC:(c+1)·BC, n] arrives from the activation memory and meets the tile: BR×BC products, summed per
output channel, leave on ``partials`` :func:`blockforge.estimate.mac_stages` cycles later (products
registered, then the adder tree in register stages), tagged with the token, the accumulator bank
and whether this is the row's first tile (the bank then overwrites instead of adding) or its last
token (``row_end``). The activation address is issued one cycle ahead (the memory is synchronous),
so a new job starts the cycle after the previous job's last token: no bubble between tiles.

A job that starts a block row (``first`` or ``empty``) needs a free accumulator bank: the top says
so on ``row_slot_free``; ``row_start`` pulses when such a job is taken. An empty block row occupies
the array for one cycle and emits a single ``row_end`` partial with ``empty`` set.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from blockforge.estimate import TREE_LEVELS_PER_STAGE, mac_stages

from .layouts import checked_geometry, EngineGeometry, ReadPortSignature

__all__ = ["MacArray", "lut_product", "lut_product_halves", "pipelined_tree_sum"]


def lut_product_halves(a, b):
    """Two values whose sum is a · b for signed 8-bit ``a`` and ``b``, as shift-and-add (no multiplier
    cell, so synthesis builds it from LUTs and carry chains): Σ_k b[k]·a·2^k over the 7 magnitude bits
    minus b[7]·a·2^7, summed two levels deep into halves (bits 0–3 and bits 4–7 of ``b``)."""
    a16 = a.as_signed()
    terms = [Mux(b[k], a16 << k, 0) for k in range(7)]
    terms.append(-Mux(b[7], a16 << 7, 0))
    return (terms[0] + terms[1]) + (terms[2] + terms[3]), (terms[4] + terms[5]) + (terms[6] + terms[7])


def lut_product(a, b):
    """a · b for signed 8-bit ``a`` and ``b`` from LUTs (:func:`lut_product_halves`, added)."""
    low, high = lut_product_halves(a, b)
    return low + high


def pipelined_tree_sum(m: Module, values, name: str) -> Signal:
    """A balanced adder tree over ``values`` with a register after every TREE_LEVELS_PER_STAGE levels
    and one at its root: the sum appears max(1, ceil(levels / TREE_LEVELS_PER_STAGE)) cycles after
    its operands (the stages :func:`blockforge.estimate.mac_stages` counts after the products)."""
    values = list(values)
    if not values:
        raise ValueError("pipelined_tree_sum of nothing")
    level = 0
    while True:
        if len(values) == 1 or level == TREE_LEVELS_PER_STAGE:
            registered = []
            for k, value in enumerate(values):
                reg = Signal(value.shape(), name=f"{name}_sum{k}", reset_less=True)
                m.d.sync += reg.eq(value)
                registered.append(reg)
            values, level = registered, 0
            if len(values) == 1:
                return values[0]
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
        level += 1


class MacArray(wiring.Component):
    """Ports: ``jobs`` (in), ``act`` (activation memory read port), ``partials`` (out, no
    backpressure), ``n_tokens`` (held while running), ``row_slot_free`` (in), ``row_start`` (out)."""

    def __init__(self, geometry: EngineGeometry):
        self.geometry = g = checked_geometry(self, geometry)
        super().__init__({
            "jobs": In(stream.Signature(g.job_layout)),
            "act": Out(ReadPortSignature(g.act_addr_bits, g.act_layout)),
            "partials": Out(stream.Signature(g.partial_layout, always_ready=True)),
            "n_tokens": In(range(g.max_tokens + 1)),
            "row_slot_free": In(1),
            "row_start": Out(1),
        })

    def elaborate(self, platform):
        g = self.geometry
        m = Module()
        job = self.jobs.payload

        # ---- token loop (the "M" stage: tile register meets the activation slice) -------------
        busy = Signal(attrs={"keep": 1})        # kept, like its copies below (else merged into one)
        token = Signal(g.token_bits)
        col = Signal(g.col_bits)
        bank = Signal()
        next_bank = Signal()
        first = Signal()
        last_tile = Signal()
        empty = Signal()
        tile = Signal(g.tile_layout, reset_less=True)
        # Local copies of what the token loop compares against, registered from ``n_tokens`` (held
        # from the start of a run; the first job arrives cycles later): the comparisons start from
        # flip-flops beside the loop instead of the top's configuration register.
        one_token = Signal(reset_less=True)
        second_last = Signal(g.token_bits, reset_less=True)
        m.d.sync += [one_token.eq(self.n_tokens == 1), second_last.eq(self.n_tokens - 2)]

        # ``ends``: the job in the array has its last cycle now (set one cycle ahead, so the job
        # handshake starts from flip-flops). The tile register loads whenever the array is finishing:
        # if no job is taken it holds a tile nobody uses, and its load enable fans out from a register.
        ends = Signal(attrs={"keep": 1})
        finishing = Signal()
        starts_row = Signal()
        take = Signal()
        m.d.comb += [
            finishing.eq(~busy | ends),
            starts_row.eq(job.first | job.empty),
            self.jobs.ready.eq(finishing & (~starts_row | self.row_slot_free)),
            take.eq(self.jobs.valid & self.jobs.ready),
            self.row_start.eq(take & starts_row),
        ]
        # The tile register's load enable (BR·BC·8 flip-flops) comes from kept copies of busy/ends, so
        # that the handshake's own busy/ends are not dragged across the die by that fan-out.
        busy_copy = Signal(attrs={"keep": 1})
        ends_copy = Signal(attrs={"keep": 1})
        busy_addr = Signal(attrs={"keep": 1})     # the activation address mux's copies (below)
        ends_addr = Signal(attrs={"keep": 1})
        with m.If(~busy_copy | ends_copy):
            m.d.sync += tile.eq(job.tile)
        with m.If(take):
            m.d.sync += [
                busy.eq(1), busy_copy.eq(1), ends_copy.eq(job.empty | one_token),
                busy_addr.eq(1), ends_addr.eq(job.empty | one_token),
                token.eq(0), col.eq(job.col), first.eq(job.first),
                last_tile.eq(job.last), empty.eq(job.empty), ends.eq(job.empty | one_token),
                bank.eq(Mux(starts_row, next_bank, bank)),
            ]
            with m.If(starts_row):
                m.d.sync += next_bank.eq(~next_bank)
        with m.Elif(~finishing):
            m.d.sync += [token.eq(token + 1), ends.eq(token == second_last), ends_copy.eq(token == second_last),
                         ends_addr.eq(token == second_last)]
        with m.Else():
            m.d.sync += [busy.eq(0), ends.eq(0), busy_copy.eq(0), ends_copy.eq(0), busy_addr.eq(0), ends_addr.eq(0)]

        # The activation memory is read one cycle ahead: address of the token in stage M next cycle
        # (while finishing, the first token of the job on offer; unused if it is not taken). The address
        # mux has its own kept copies of busy/ends, so that the job handshake's ``finishing`` is not
        # shared with (and placed beside) the activation address registers.
        stride_bits = g.token_bits
        m.d.comb += [
            self.act.en.eq(1),
            self.act.addr.eq(Mux(~busy_addr | ends_addr, job.col << stride_bits, (col << stride_bits) | (token + 1))),
        ]

        # ---- multiply and reduce: BR lanes of BC products, pipelined ------------------------------
        # Each multiplier gets its own copy of its two operands in flip-flops placed beside it (the
        # activation byte would otherwise fan out to BR multipliers across the die); the product takes
        # two register stages (LUT shift-and-add: two halves, then their sum; DSP: its output, then a
        # copy), then the adder tree adds every TREE_LEVELS_PER_STAGE levels. The tags ride along so
        # they leave with their sums.
        x = self.act.data
        sums = []
        for i in range(g.rows):
            products = []
            for j in range(g.cols):
                weight = Signal(signed(8), name=f"weight_{i}_{j}", reset_less=True)
                # kept: synthesis would otherwise merge the BR equal copies (docs/fpga.md "Replicas")
                activation = Signal(signed(8), name=f"activation_{i}_{j}", attrs={"keep": 1}, reset_less=True)
                product = Signal(signed(16), name=f"product_{i}_{j}", reset_less=True)
                m.d.sync += [weight.eq(tile[i][j]), activation.eq(x[j])]
                if i * g.cols + j < g.mac_dsps:
                    # a DSP multiplier, its output registered, then one more register (the LUT
                    # product's depth)
                    at_dsp = Signal(signed(16), name=f"dsp_{i}_{j}", reset_less=True)
                    m.d.sync += [at_dsp.eq(weight * activation), product.eq(at_dsp)]
                else:
                    low = Signal(signed(16), name=f"low_{i}_{j}", reset_less=True)
                    high = Signal(signed(16), name=f"high_{i}_{j}", reset_less=True)
                    halves = lut_product_halves(weight, activation)
                    m.d.sync += [low.eq(halves[0]), high.eq(halves[1]), product.eq(low + high)]
                products.append(product)
            sums.append(pipelined_tree_sum(m, products, f"lane{i}"))
        tags = Signal(data.StructLayout({name: shape for name, shape in g.partial_layout.members.items()
                                         if name != "sums"} | {"valid": 1}))
        m.d.comb += [
            tags.valid.eq(busy), tags.token.eq(token), tags.bank.eq(bank), tags.first.eq(first),
            tags.empty.eq(empty), tags.row_end.eq(last_tile & ends),
        ]
        for k in range(mac_stages(g.cols)):
            delayed = Signal.like(tags, name=f"tags_d{k + 1}")
            m.d.sync += delayed.eq(tags)
            tags = delayed
        out = self.partials.payload
        m.d.comb += [
            self.partials.valid.eq(tags.valid),
            out.token.eq(tags.token), out.bank.eq(tags.bank), out.first.eq(tags.first),
            out.empty.eq(tags.empty), out.row_end.eq(tags.row_end),
        ]
        for i in range(g.rows):
            m.d.comb += out.sums[i].eq(sums[i])
        return m
