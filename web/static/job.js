// Live figures and a throughput chart for a job's status page.
//
// Polls the job's API URL (data-job-url on #job) every second, updates the
// counters in place and draws pages fetched per second between consecutive
// samples as a polyline in #throughput-chart. It stops polling once the job
// reaches a final state. Without JavaScript the page shows the figures of its
// load time and refreshes itself through a <noscript> meta refresh.
"use strict";

(function () {
  const POLL_MS = 1000;
  const MAX_SAMPLES = 300;
  const FINAL_STATES = new Set(["completed", "failed", "cancelled"]);
  const CHART = { left: 40, right: 590, top: 10, bottom: 140 };

  const root = document.getElementById("job");
  if (!root || !root.dataset.jobUrl) {
    return;
  }
  const jobUrl = root.dataset.jobUrl;
  const samples = [];

  function setText(id, value) {
    const element = document.getElementById(id);
    if (element) {
      element.textContent = String(value);
    }
  }

  function rates() {
    const points = [];
    for (let i = 1; i < samples.length; i += 1) {
      const seconds = (samples[i].time - samples[i - 1].time) / 1000;
      if (seconds > 0) {
        const fetched = samples[i].fetched - samples[i - 1].fetched;
        points.push({ time: samples[i].time, rate: Math.max(0, fetched / seconds) });
      }
    }
    return points;
  }

  function drawChart() {
    const points = rates();
    const line = document.getElementById("chart-line");
    if (!line || points.length === 0) {
      return;
    }
    const note = document.getElementById("chart-note");
    if (note) {
      note.textContent = "";
    }
    const maxRate = Math.max(1, ...points.map((point) => point.rate));
    const first = points[0].time;
    const span = Math.max(1, points[points.length - 1].time - first);
    const width = CHART.right - CHART.left;
    const height = CHART.bottom - CHART.top;
    const coordinates = points.map((point) => {
      const x = CHART.left + ((point.time - first) / span) * width;
      const y = CHART.bottom - (point.rate / maxRate) * height;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    line.setAttribute("points", coordinates.join(" "));
    setText("chart-max", `${maxRate.toFixed(1)}/s`);
  }

  function update(job) {
    const state = document.getElementById("job-state");
    if (state) {
      state.textContent = job.state;
      state.className = `state state-${job.state}`;
    }
    const counters = job.counters;
    setText("counter-fetched", counters.fetched);
    setText("counter-failed", counters.failed);
    setText("counter-queued", counters.queued);
    setText("counter-in-progress", counters.in_progress);
    setText("counter-pages", counters.pages);
    setText("pages-per-second", job.pages_per_second.toFixed(1));
    const progress = document.getElementById("progress");
    if (progress) {
      progress.value = counters.fetched;
    }

    samples.push({ time: Date.now(), fetched: counters.fetched });
    if (samples.length > MAX_SAMPLES) {
      samples.shift();
    }
    drawChart();
  }

  async function poll() {
    let final = false;
    try {
      const response = await fetch(jobUrl, {
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (response.status === 404) {
        setText("live-status", "This job was deleted.");
        return;
      }
      if (!response.ok) {
        throw new Error(`HTTP ${response.status}`);
      }
      const job = await response.json();
      update(job);
      final = FINAL_STATES.has(job.state);
      if (final) {
        // Cancel, pause and resume no longer apply; delete stays.
        for (const form of document.querySelectorAll("form.job-action")) {
          form.hidden = true;
        }
      }
      setText(
        "live-status",
        final
          ? "This job has finished."
          : `Live: updated ${new Date().toLocaleTimeString()}.`,
      );
    } catch (error) {
      setText("live-status", `Live updates failed (${error.message}); retrying.`);
    }
    if (!final) {
      window.setTimeout(poll, POLL_MS);
    }
  }

  if (root.dataset.final !== "true") {
    poll();
  }
})();
