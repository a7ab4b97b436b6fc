// The main loop of blockforge's Verilator benches (bf_sim_clocked built with BF_CLOCK_FROM_MAIN), used
// instead of cocotb's own.
//
// It runs cocotb through the VPI as cocotb's Verilator main does — every time step: evaluate, apply VPI
// writes, value-change / ReadWrite / ReadOnly / NextSimTime / timed callbacks — with two differences:
// - The clock is toggled here, every BF_CLOCK_HALF_PERIOD_NS (the top's `clk` input), instead of by an
//   `always #5` in the Verilog, which needs Verilator's --timing coroutine scheduler on every edge.
// - While the top's input `quiet` is high, the bench has promised that it waits on a timer and watches
//   no signal (blockforge_sim.monitor sets it around the stretch of the estimated cycles). Then the clock
//   edges up to that timer are evaluated back to back, without a VPI call per time step: with no
//   callback registered those calls would have done nothing. The timer itself, and every step after
//   it, go through the full loop again.
//
// Command line as cocotb's Verilator main: --trace, --trace-file FILE, --trace-flush, plusargs. Not carried
// over from it: coverage output (VM_COVERAGE) and SAIF traces; the benches use neither.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "Vtop.h"
#include "verilated.h"
#include "verilated_vpi.h"

#if VM_TRACE
#if VM_TRACE_FST
#include <verilated_fst_c.h>
using Trace = VerilatedFstC;
static const char* default_trace_file = "dump.fst";
#else
#include <verilated_vcd_c.h>
using Trace = VerilatedVcdC;
static const char* default_trace_file = "dump.vcd";
#endif
static Trace* trace = nullptr;
static bool trace_flush = false;
#endif

#ifndef BF_CLOCK_HALF_PERIOD_NS
#error "build with -DBF_CLOCK_HALF_PERIOD_NS=<half the clock period in ns>"
#endif

static vluint64_t sim_time = 0;
static const vluint64_t NEVER = ~static_cast<vluint64_t>(0);

double sc_time_stamp() { return static_cast<double>(sim_time); }  // $time, and the VPI's time

extern "C" void vlog_startup_routines_bootstrap(void);

// Value-change callbacks may write signals that fire more callbacks: repeat until none fires.
static void settle() {
    while (VerilatedVpi::callValueCbs()) {
    }
}

static void dump() {
#if VM_TRACE
    if (trace) {
        trace->dump(sim_time);
        if (trace_flush) trace->flush();
    }
#endif
}

static void finish() {
    VerilatedVpi::callCbs(cbEndOfSimulation);
#if VM_TRACE
    if (trace) trace->close();
#endif
}

// One time step with the VPI: evaluate until neither the design nor a callback changes anything.
static void step(Vtop* top) {
    do {
        do {
            top->eval_step();
            VerilatedVpi::clearEvalNeeded();
            VerilatedVpi::doInertialPuts();
            settle();
        } while (VerilatedVpi::evalNeeded());
        VerilatedVpi::callCbs(cbReadWriteSynch);
        VerilatedVpi::doInertialPuts();
        settle();
    } while (VerilatedVpi::evalNeeded());
    top->eval_end_step();
    VerilatedVpi::callCbs(cbReadOnlySynch);
    dump();
}

static vluint64_t next_design_event(Vtop* top) { return top->eventsPending() ? top->nextTimeSlot() : NEVER; }

// Half the clock period in the simulation's time unit (its precision, e.g. ps under `timescale 1ns/1ps).
static vluint64_t half_period_ticks() {
    const int precision = Verilated::threadContextp()->timeprecision();  // e.g. -12
    return static_cast<vluint64_t>(std::llround(BF_CLOCK_HALF_PERIOD_NS * std::pow(10.0, -9 - precision)));
}

int main(int argc, char** argv) {
    bool trace_on = false;
    std::string trace_file;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--trace") {
            trace_on = true;
        } else if (arg == "--trace-flush") {
#if VM_TRACE
            trace_flush = true;
#endif
        } else if (arg == "--trace-file" && i + 1 < argc) {
            trace_file = argv[++i];
        }
    }
#if !VM_TRACE
    if (trace_on) {
        std::fprintf(stderr, "Error: --trace needs a build with waves\n");
        return 1;
    }
#endif
    Verilated::commandArgs(argc, argv);
    std::unique_ptr<Vtop> top(new Vtop(""));
    Verilated::fatalOnVpiError(false);  // cocotb's system tasks are not known to Verilator
#if VM_TRACE
    Verilated::traceEverOn(true);
    if (trace_on) {
        trace = new Trace;
        top->trace(trace, 99);
        trace->open(trace_file.empty() ? default_trace_file : trace_file.c_str());
    }
#endif
    const vluint64_t half = half_period_ticks();
    vluint64_t next_edge = half;  // as `initial clk = 0; always #half clk = !clk;`: the first edge rises
    bool edge_now = false;
    top->clk = 0;

    vlog_startup_routines_bootstrap();
    Verilated::addExitCb([](void*) { finish(); }, nullptr);
    VerilatedVpi::callCbs(cbStartOfSimulation);
    settle();

    while (!Verilated::gotFinish()) {
        if (edge_now) {  // after this time's NextSimTime and timed callbacks, as the `always` would
            top->clk = !top->clk;
            edge_now = false;
        }
        step(top.get());
        vluint64_t next_timer = VerilatedVpi::cbNextDeadline();
        // The fast stretch: the bench waits on its timer and has no other callback armed. Never without
        // a timer to stop at, and never past an event the design schedules itself.
        while (top->quiet && next_timer != NEVER && next_edge < next_timer &&
               next_edge < next_design_event(top.get()) && !Verilated::gotFinish()) {
            sim_time = next_edge;
            next_edge += half;
            top->clk = !top->clk;
            top->eval_step();
            top->eval_end_step();
            dump();
        }
        if (Verilated::gotFinish()) break;
        vluint64_t next = std::min({next_timer, next_edge, next_design_event(top.get())});
        sim_time = next;
        if (next == next_edge) {
            edge_now = true;
            next_edge += half;
        }
        VerilatedVpi::callCbs(cbNextSimTime);
        settle();
        VerilatedVpi::callTimedCbs();
        settle();
    }

    top->final();
    finish();
#if VM_TRACE
    delete trace;
    trace = nullptr;
#endif
    return Verilated::threadContextp()->errorCount() > 0 ? 1 : 0;
}
