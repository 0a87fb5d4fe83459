// A sagaline task worker in Node.js 20, with nothing but the runtime's fetch.
//
//   SAGALINE_URL=http://127.0.0.1:8080 SAGALINE_TOKEN=sgl_... node worker.mjs payments [count]
//
// It claims tasks of the queue (long-polling), charges the order in each task's input, and
// completes the task with the payment, heartbeating while it works. A 409 means the lease
// was lost (the task went to another worker): the task is dropped. It stops after `count`
// tasks (default: never). WORK_MS=N makes each task take N ms (a slow service, for trying
// out heartbeats and a worker killed mid-task).

const url = (process.env.SAGALINE_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const token = process.env.SAGALINE_TOKEN;
const queue = process.argv[2] ?? "payments";
const count = Number(process.argv[3] ?? Infinity);
const worker = `node-${process.pid}`;
const workMs = Number(process.env.WORK_MS ?? 0);
if (!token) {
  console.error("set SAGALINE_TOKEN to a token made with `sagaline tokens create NAME --role worker`");
  process.exit(1);
}

class LeaseLost extends Error {}

async function post(path, body) {
  const response = await fetch(`${url}/api/v1/tasks/${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (response.status === 409) throw new LeaseLost(answer.detail);
  if (!response.ok) throw new Error(`${response.status} ${answer.code}: ${answer.detail}`);
  return answer;
}

// The work itself: one handler per step name, called with the step's arguments.
const handlers = {
  "tasks.charge": async ({ order }) => ({ id: `node-${order.id}`, amount: order.amount }),
  "tasks.slow_charge": async ({ order }) => ({ id: `node-${order.id}`, amount: order.amount }),
  "tasks.charge_card": async ({ order }) => ({ id: `node-${order.id}`, amount: order.amount }),
  // A compensation task: called with the step's arguments and its result; returns nothing.
  "tasks.refund": async ({ order, payment }) => null,
};

async function handle(task) {
  const handler = handlers[task.step];
  if (!handler) {
    const error = { type: "UnknownStep", message: `no handler for ${task.step}` };
    return post(`${task.id}/fail`, { token: task.token, error, non_retryable: true });
  }
  const beat = await post(`${task.id}/heartbeat`, { token: task.token });
  if (beat.cancel_requested) {
    // The run was cancelled: it waits for this answer, so say at once that nothing was done.
    const error = { type: "Cancelled", message: "the run was cancelled before the work began" };
    await post(`${task.id}/fail`, { token: task.token, error, non_retryable: true });
    return console.log(`task ${task.id}: run cancelled, not done`);
  }
  console.log(`claimed task ${task.id} (${task.step}, attempt ${task.attempt})`);
  let result;
  try {
    if (workMs > 0) await new Promise((done) => setTimeout(done, workMs));
    result = await handler(task.input);
  } catch (err) {
    const error = { type: err.name ?? "Error", message: String(err.message ?? err) };
    return post(`${task.id}/fail`, { token: task.token, error, non_retryable: false });
  }
  await post(`${task.id}/complete`, { token: task.token, result });
  console.log(`completed task ${task.id} (${task.step}, attempt ${task.attempt})`);
}

let done = 0;
while (done < count) {
  const { tasks } = await post("claim", { queue, worker, max: 1, wait_seconds: 20 });
  for (const task of tasks) {
    try {
      await handle(task);
    } catch (err) {
      if (!(err instanceof LeaseLost)) throw err;
      console.error(`task ${task.id}: lease lost, another worker has it`);
    }
    done += 1;
  }
}
