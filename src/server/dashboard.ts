/**
 * The dashboard served at `/`: one page with its script and styles inline, polling /api/status
 * twice a second. Its only other files are uPlot's script and stylesheet (the chart library, a
 * runtime dependency), read once from the installed package when the HTTP handler is made and
 * served under /assets/ — never a CDN: the page works on a closed network.
 *
 * What it shows, and why it is drawn that way:
 * - The live round: its stage, and for the stage how many clients answered, how many it still
 *   waits for (pending), how many quit, and the time left before its deadline.
 * - Round duration per round on a time axis (round start, local time) with a **log-scale** y axis
 *   in seconds. A log scale is chosen over clipping: one round that waited out a 30 s deadline next
 *   to 0.3 s rounds is two decades up, and every other round keeps its own height; clipping would
 *   need a marker and still hide how slow the outlier was. Rounds slowed by a stage deadline are
 *   ringed, and p50 / p90 are drawn as reference lines.
 * - p50 / p90 / p99 of the duration of the completed rounds shown (nearest rank), with their count.
 *   Aborted rounds are left out of the percentiles: their duration is time to failure (often a
 *   deadline), and mixed in it would hide whether successful rounds get slower; they are on the
 *   chart in red.
 * - Clients per round (cohort, in the sum), clients dropped per stage (stacked bars, from the stage
 *   records), bytes per round; every axis says its unit.
 * - The history table: start time, outcome, duration, dropouts per stage, the stages a deadline
 *   closed, bytes, ε of the round and cumulative (DP services), and the abort reason.
 * - DP services (status.dp): ε spent, the budget and whether it stopped rounds; ε per round and
 *   cumulative on the same time axis, the budget as a dashed line.
 * - A cluster's coordinator (status.cluster): which coordinator is active, every gateway (alive,
 *   waiting clients, connections) and shard worker (alive, the shards it runs), the running round's
 *   shards (stage, the worker running it, and how many workers it has had: more than one is a
 *   failover, flagged), and the bytes written to Redis. A lapsed heartbeat shows as "down".
 *
 * Everything from the server is escaped before it reaches innerHTML. The page copes with an empty
 * history, a running round, aborted rounds, and rounds recorded before the stage records had
 * `expected` / `dropped` / `deadline` (shown as "–").
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ACTIVE_ONLY_STAGES, STAGES } from '../protocol/stages.js';

/** A file the page loads besides itself. */
export interface DashboardAsset {
  readonly body: Buffer;
  readonly contentType: string;
  /** Versioned paths: cached for a year, never revalidated. */
  readonly cacheControl: string;
}

export interface Dashboard {
  /** The page served at `/`. */
  readonly html: string;
  /** By URL path (e.g. /assets/uplot-1.6.32/uPlot.iife.min.js). */
  readonly assets: ReadonlyMap<string, DashboardAsset>;
}

let loaded: Dashboard | undefined;

/**
 * The page and its assets, read from the uplot package the first time (the service calls it when
 * it starts); later calls return the same object. Throws when uplot is not installed.
 *
 * @example
 * ```ts
 * const { html, assets } = loadDashboard();
 * const asset = assets.get(url.pathname); // serve asset.body with asset.contentType
 * ```
 */
export function loadDashboard(): Dashboard {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const { version } = require('uplot/package.json') as { version: string };
  const base = `/assets/uplot-${version}`;
  const cacheControl = 'public, max-age=31536000, immutable';
  const file = (name: string, contentType: string): [string, DashboardAsset] => [
    `${base}/${name}`,
    { body: readFileSync(require.resolve(`uplot/dist/${name}`)), contentType, cacheControl },
  ];
  const assets = new Map([file('uPlot.iife.min.js', 'text/javascript; charset=utf-8'), file('uPlot.min.css', 'text/css; charset=utf-8')]);
  loaded = { html: page(`${base}/uPlot.iife.min.js`, `${base}/uPlot.min.css`), assets };
  return loaded;
}

function page(script: string, css: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>secagg — aggregation server</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${css}">
<style>
:root{--ok:#1a7f37;--bad:#cf222e;--run:#0969da;--warn:#9a6700;--mut:#57606a;--bg:#f6f8fa}
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:var(--bg);color:#24292f}
header{background:#24292f;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0}header span{color:#c9d1d9}
main{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px;padding:16px 20px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;min-width:0}
section.wide{grid-column:1/3}h2{font-size:15px;margin:0 0 8px}h2 small{color:var(--mut);font-weight:400}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{color:var(--mut);font-weight:600}.completed{color:var(--ok)}.aborted{color:var(--bad)}.running{color:var(--run)}
.stages{display:flex;gap:6px;margin:10px 0 0}.st{flex:1;padding:6px;border-radius:4px;background:#eaeef2;text-align:center;font-size:13px}
.st.cur{background:var(--run);color:#fff}.st.past{background:#dafbe1}.st small{display:block}
.big{font-size:26px;font-weight:600;font-variant-numeric:tabular-nums}
.kv{display:grid;grid-template-columns:auto 1fr;gap:2px 12px}.kv b{color:var(--mut);font-weight:600}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:8px;margin-bottom:10px}.card b{display:block;color:var(--mut);font-size:12px;font-weight:600}
.pending{color:var(--warn);font-weight:600}.flag{background:#fff8c5;border:1px solid #d4a72c;color:#7d4e00;border-radius:10px;padding:0 7px;font-weight:600;white-space:nowrap}
.st .flag{display:inline-block;margin-top:3px}.drop{white-space:nowrap;margin-right:8px}
.note{color:var(--mut);font-size:12px;margin:4px 0 0}.empty{color:var(--mut);padding:40px 0;text-align:center}
.chart{min-height:260px}.reason{max-width:360px;overflow-wrap:anywhere}
.cluster{display:grid;grid-template-columns:1fr 1fr 1.4fr;gap:16px;margin-top:8px}.cluster h3{font-size:13px;margin:0 0 4px;color:var(--mut)}
.up{color:var(--ok);font-weight:600}.down{color:var(--bad);font-weight:600}
</style></head><body>
<header><h1>secagg aggregation server</h1><span id="conn">connecting…</span></header>
<main>
<section><h2>Live round</h2><div id="live"><p id="idle">No round running.</p></div></section>
<section><h2>Totals and round duration</h2>
<div class="cards">
<div class="card"><b>completed</b><span class="big completed" id="totals-completed">0</span></div>
<div class="card"><b>aborted</b><span class="big aborted" id="totals-aborted">0</span></div>
<div class="card"><b>connections</b><span class="big" id="connections">0</span></div>
<div class="card"><b>waiting</b><span class="big" id="waiting">0</span></div></div>
<div class="cards" id="percentiles">
<div class="card"><b>p50 duration</b><span class="big" id="p50">–</span></div>
<div class="card"><b>p90 duration</b><span class="big" id="p90">–</span></div>
<div class="card"><b>p99 duration</b><span class="big" id="p99">–</span></div>
<div class="card"><b>rounds counted</b><span class="big" id="p-count">0</span></div></div>
<p class="note">Percentiles (nearest rank) of the duration of the completed rounds in the history below; aborted rounds are not counted.</p></section>
<section class="wide" id="cluster-section" hidden><h2>Cluster <small>coordinator, gateways, shard workers and the running round's shards</small></h2>
<div class="kv"><b>coordinator</b><span id="cluster-coordinator"></span><b>written to Redis</b><span id="cluster-redis-bytes"></span><b>round</b><span id="cluster-round"></span></div>
<div class="cluster">
<div><h3>Gateways</h3><table><thead><tr><th>gateway</th><th>state</th><th>waiting</th><th>connections</th></tr></thead><tbody id="cluster-gateways"></tbody></table></div>
<div><h3>Shard workers</h3><table><thead><tr><th>worker</th><th>state</th><th>shards running</th></tr></thead><tbody id="cluster-workers"></tbody></table></div>
<div><h3>Shards of the running round</h3><table><thead><tr><th>shard</th><th>clients</th><th>stage</th><th>worker</th><th>owners</th></tr></thead><tbody id="cluster-shards"></tbody></table>
<p class="note" id="cluster-shards-empty">No round running.</p></div></div>
<p class="note">Owners: how many workers have run the shard; more than one means it failed over from a worker that stopped. The coordinator learns each shard's sum, so a shard is the privacy unit.</p></section>
<section><h2>Round duration <small>seconds, log scale · ringed: slowed by a stage deadline</small></h2><div class="chart" id="chart-duration"></div></section>
<section><h2>Clients per round <small>cohort and clients in the sum</small></h2><div class="chart" id="chart-clients"></div></section>
<section><h2>Dropouts per stage <small>clients each stage lost, stacked</small></h2><div class="chart" id="chart-dropouts"></div></section>
<section><h2>Traffic per round <small>bytes received and sent</small></h2><div class="chart" id="chart-bytes"></div></section>
<section class="wide" id="dp-section" hidden><h2>Privacy <small>ε per round and cumulative (at the service's δ) · dashed: the budget</small></h2>
<p id="dp-summary"></p><div class="chart" id="chart-epsilon"></div></section>
<section class="wide"><h2>History <small>newest first</small></h2><table><thead><tr><th>#</th><th>started</th><th>outcome</th><th>cohort</th><th>in sum</th><th>duration</th><th>dropped per stage</th><th>deadline passed in</th><th>m</th><th>k / t</th><th>bytes in / out</th><th>ε round</th><th>ε cumulative</th><th>reason</th></tr></thead>
<tbody id="history"></tbody></table><p class="empty" id="history-empty">No rounds yet.</p></section>
</main>
<script src="${script}"></script>
<script>
${PAGE_SCRIPT.replace('__STAGES__', JSON.stringify(STAGES)).replace('__ACTIVE_ONLY__', JSON.stringify(ACTIVE_ONLY_STAGES))}
</script></body></html>`;
}

/** The page's script (plain browser JavaScript; no template placeholders besides the two stage lists). */
const PAGE_SCRIPT = `
const STAGES=__STAGES__;
const ACTIVE_ONLY=__ACTIVE_ONLY__;
const COLORS={completed:'#1a7f37',aborted:'#cf222e',deadline:'#bf8700',p50:'#57606a',p90:'#8250df'};
const STAGE_COLORS=['#0969da','#8250df','#bf3989','#cf222e','#bc4c00','#1a7f37'];
const $=(id)=>document.getElementById(id);
const esc=(s)=>String(s).replace(/[&<>"']/g,(c)=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'})[c]);
const num=(v)=>typeof v==='number'&&Number.isFinite(v)?v:null;
const pad=(n)=>String(n).padStart(2,'0');
const hm=(ms)=>{const d=new Date(ms);return pad(d.getHours())+':'+pad(d.getMinutes());};
const hms=(ms)=>hm(ms)+':'+pad(new Date(ms).getSeconds());
const ymd=(ms)=>{const d=new Date(ms);return d.getFullYear()+'-'+pad(d.getMonth()+1)+'-'+pad(d.getDate());};
const secs=(s)=>s.toFixed(2)+' s';
const fmtB=(n)=>n>=1e6?(n/1e6).toFixed(1)+' MB':n>=1e3?(n/1e3).toFixed(1)+' kB':Math.round(n)+' B';
const fmtEps=(v)=>num(v)==null?'–':(+v.toPrecision(4)).toString();
const sumStages=(r,f)=>Object.values(r.stages||{}).reduce((a,s)=>a+(num(f(s))??0),0);
const duration=(r)=>(r.endedAt-r.startedAt)/1000;
/** Nearest-rank percentile of ascending values. */
const percentile=(sorted,p)=>sorted[Math.max(0,Math.ceil((p/100)*sorted.length)-1)];
/** Stages of the round a deadline closed. */
const deadlineStages=(r)=>Object.keys(r.stages||{}).filter((s)=>r.stages[s]&&r.stages[s].deadline===true);
const stagesOf=(mode)=>STAGES.filter((s)=>!ACTIVE_ONLY.includes(s)||mode==='active');

// ---- charts (uPlot) ----
const charts={};
/** Tick labels are drawn on canvas: the chart's element also carries them (data-x-ticks, data-y-ticks, aria-label) for tests and screen readers. */
function ticks(el,axis,splits,labels){const shown=labels.map((l,i)=>[l,splits[i]]).filter(([l])=>l!=='');
  el.dataset[axis+'Ticks']=JSON.stringify(shown.map(([l])=>l));el.dataset[axis+'Splits']=JSON.stringify(shown.map(([,v])=>v));
  el.setAttribute('aria-label',el.dataset.title+'. x axis: '+(el.dataset.xTicks||'')+'. y axis: '+(el.dataset.yTicks||''));return labels;}
function timeAxis(el){return {label:'round start (local time)',labelSize:20,space:70,
  values:(u,splits,_a,_s,incr)=>ticks(el,'x',splits,splits.map((v)=>incr>=86400?ymd(v*1000):incr>=60?hm(v*1000):hms(v*1000)))};}
function valueAxis(el,label,fmt,extra){return Object.assign({label,labelSize:20,size:70,values:(u,splits)=>ticks(el,'y',splits,splits.map((v)=>v==null?'':fmt(v)))},extra||{});}
function xRange(u,min,max){if(min==null||max==null){const now=Date.now()/1000;return [now-300,now];}
  const padding=Math.max(5,(max-min)*0.05);return [min-padding,max+padding];}
/** Log-axis ticks at 1, 2 and 5 × 10^k (uPlot's default puts a grid line at every integer multiple). */
function logSplits(u,_axis,min,max){const out=[];
  for(let e=Math.floor(Math.log10(min));e<=Math.ceil(Math.log10(max));e++)for(const m of [1,2,5]){const v=+(m*10**e).toPrecision(2);if(v>=min*0.999&&v<=max*1.001)out.push(v);}
  return out;}
const countRange=(u,min,max)=>[0,Math.max(1,Math.ceil((max??0)*1.15))];
const INT_INCRS=[1,2,5,10,20,50,100,200,500,1000,2000,5000,10000,20000,50000,100000];
const pointsOnly=(color,size)=>({stroke:color,fill:color,paths:()=>null,points:{show:true,size:size||8,stroke:color,fill:color}});
function draw(id,key,make,data){const el=$(id);const c=charts[id];
  if(c&&c.key===key){c.u.setData(data);return;}
  if(c)c.u.destroy();
  el.dataset.title=el.parentElement.querySelector('h2').firstChild.textContent.trim();
  el.setAttribute('role','img');
  charts[id]={key,u:new uPlot(Object.assign({width:Math.max(300,el.clientWidth),height:240,legend:{live:false}},make(el)),data,el)};}
addEventListener('resize',()=>{for(const id in charts){const el=$(id);charts[id].u.setSize({width:Math.max(300,el.clientWidth),height:240});}});

function drawCharts(ended){
  const xs=ended.map((r)=>r.startedAt/1000);
  const d=ended.map(duration);
  const done=ended.filter((r)=>r.outcome==='completed').map(duration).sort((a,b)=>a-b);
  const p50=done.length?percentile(done,50):null,p90=done.length?percentile(done,90):null;
  const pos=(v)=>v>0?v:null; // a log scale has no 0
  draw('chart-duration','duration',(el)=>({
    scales:{x:{time:true,range:xRange},y:{distr:3,log:10,range:(u,min,max)=>min==null?[0.1,10]:uPlot.rangeLog(min,max,10,true)}},
    axes:[timeAxis(el),valueAxis(el,'duration (s, log)',(v)=>+v.toPrecision(2)+' s',{splits:logSplits})],
    series:[{label:'round start',value:(u,v)=>v==null?'–':hms(v*1000)},
      Object.assign({label:'completed'},pointsOnly(COLORS.completed)),
      Object.assign({label:'aborted'},pointsOnly(COLORS.aborted)),
      {label:'slowed by a deadline',stroke:COLORS.deadline,paths:()=>null,points:{show:true,size:16,width:2.5,stroke:COLORS.deadline,fill:'rgba(0,0,0,0)'}},
      {label:'p50 (completed)',stroke:COLORS.p50,dash:[6,4],width:1.5,points:{show:false}},
      {label:'p90 (completed)',stroke:COLORS.p90,dash:[6,4],width:1.5,points:{show:false}}]}),
    [xs,ended.map((r,i)=>r.outcome==='completed'?pos(d[i]):null),ended.map((r,i)=>r.outcome==='aborted'?pos(d[i]):null),
      ended.map((r,i)=>deadlineStages(r).length?pos(d[i]):null),xs.map(()=>p50&&pos(p50)),xs.map(()=>p90&&pos(p90))]);
  draw('chart-clients','clients',(el)=>({
    scales:{x:{time:true,range:xRange},y:{range:countRange}},
    axes:[timeAxis(el),valueAxis(el,'clients',(v)=>String(v),{incrs:INT_INCRS})],
    series:[{label:'round start',value:(u,v)=>v==null?'–':hms(v*1000)},
      {label:'cohort',stroke:'#8c959f',width:2,dash:[4,3],points:{show:true,size:6,fill:'#8c959f'}},
      {label:'in the sum',stroke:COLORS.completed,width:2,points:{show:true,size:7,fill:COLORS.completed}}]}),
    [xs,ended.map((r)=>num(r.params&&r.params.cohort)),ended.map((r)=>r.included?r.included.length:0)]);
  // Stacked bars: a stage's series is the total of it and every later stage, so the first (tallest) is
  // drawn first and each later one over it: every stage's part shows, and the legend keeps stage order.
  const stages=stagesOf(ended.some((r)=>r.params&&r.params.mode==='active')?'active':'semi-honest');
  const raw=stages.map((s)=>ended.map((r)=>{const rec=r.stages&&r.stages[s];return rec?num(rec.dropped):null;}));
  const stacked=raw.map((_,j)=>ended.map((_r,i)=>{let t=0,any=false;for(let k=j;k<raw.length;k++){const v=raw[k][i];if(v!=null){t+=v;any=true;}}return any?t:null;}));
  const bars=uPlot.paths.bars({size:[0.6,36,6],gap:1});
  draw('chart-dropouts','dropouts:'+stages.join(),(el)=>({
    scales:{x:{time:true,range:xRange},y:{range:countRange}},
    axes:[timeAxis(el),valueAxis(el,'clients dropped',(v)=>String(v),{incrs:INT_INCRS})],
    series:[{label:'round start',value:(u,v)=>v==null?'–':hms(v*1000)}].concat(stages.map((s,j)=>{
      const c=STAGE_COLORS[STAGES.indexOf(s)%STAGE_COLORS.length];
      return {label:s,stroke:c,fill:c+'cc',width:1,paths:bars,points:{show:false},value:(u,v,si,i)=>{const x=raw[j][i];return x==null?'–':String(x);}};}))}),
    [xs].concat(stacked));
  draw('chart-bytes','bytes',(el)=>({
    scales:{x:{time:true,range:xRange},y:{range:(u,min,max)=>[0,Math.max(1000,(max??0)*1.15)]}},
    axes:[timeAxis(el),valueAxis(el,'bytes per round',fmtB)],
    series:[{label:'round start',value:(u,v)=>v==null?'–':hms(v*1000)},
      {label:'received',stroke:'#0969da',width:2,points:{show:true,size:6,fill:'#0969da'},value:(u,v)=>v==null?'–':fmtB(v)},
      {label:'sent',stroke:'#bc4c00',width:2,points:{show:true,size:6,fill:'#bc4c00'},value:(u,v)=>v==null?'–':fmtB(v)}]}),
    [xs,ended.map((r)=>sumStages(r,(s)=>s.bytesIn)),ended.map((r)=>sumStages(r,(s)=>s.bytesOut))]);
  if(!ended.some((r)=>r.dp))return;
  // ε per round (aborted rounds: 0, they release nothing) and cumulative over the history, on the same time axis; the budget as a line.
  const budget=budgetEps;
  draw('chart-epsilon','epsilon',(el)=>({
    scales:{x:{time:true,range:xRange},y:{range:(u,min,max)=>[0,Math.max(budget??0,(max??0)*1.15,0.1)]}},
    axes:[timeAxis(el),valueAxis(el,'ε',(v)=>String(+v.toPrecision(3)))],
    series:[{label:'round start',value:(u,v)=>v==null?'–':hms(v*1000)},
      {label:'ε of the round',stroke:'#0969da',width:0,paths:()=>null,points:{show:true,size:7,fill:'#0969da'},value:(u,v)=>fmtEps(v)},
      {label:'ε cumulative',stroke:'#8250df',width:2,points:{show:true,size:5,fill:'#8250df'},value:(u,v)=>fmtEps(v)},
      {label:'budget',stroke:COLORS.aborted,dash:[6,4],width:1.5,points:{show:false},value:(u,v)=>fmtEps(v)}]}),
    [xs,ended.map((r)=>r.dp?num(r.dp.epsilon):null),ended.map((r)=>r.dp?num(r.dp.cumulativeEpsilon):null),xs.map(()=>budget)]);
}
let budgetEps=null;
function renderDp(st){const dp=st.dp;$('dp-section').hidden=!dp;if(!dp)return;budgetEps=dp.budget?dp.budget.epsilon:null;
  $('dp-summary').innerHTML='<span class="kv" style="display:inline-grid"><b>ε spent</b><span id="dp-spent">'+esc(fmtEps(dp.spent))+'</span>'+
    '<b>budget</b><span id="dp-budget">'+(dp.budget?esc(fmtEps(dp.budget.epsilon))+' at δ = '+esc(dp.budget.delta):'none')+'</span>'+
    '<b>rounds accounted</b><span>'+esc(dp.rounds)+'</span><b>mechanism</b><span>'+esc(dp.mechanism)+', z = '+esc(dp.noiseMultiplier)+', δ = '+esc(dp.delta)+'</span></span>'+
    (dp.exhausted?' <span class="flag" id="dp-exhausted">budget exhausted: no new rounds</span>':'');}

function renderCluster(st){const c=st.cluster;$('cluster-section').hidden=!c;if(!c)return;
  const state=(alive)=>alive?'<span class="up">up</span>':'<span class="down">down</span>';
  $('cluster-coordinator').textContent=c.coordinator.id+(c.coordinator.active?' (active)':' (standby)');
  $('cluster-redis-bytes').textContent=fmtB(num(c.redisBytes)??0);$('cluster-redis-bytes').dataset.bytes=String(num(c.redisBytes)??0);
  $('cluster-gateways').innerHTML=c.gateways.map((g)=>'<tr data-gateway="'+esc(g.id)+'" data-alive="'+esc(g.alive)+'"><td>'+esc(g.id)+'</td><td>'+state(g.alive)+'</td><td class="waiting">'+esc(g.waiting)+'</td><td class="connections">'+esc(g.connections)+'</td></tr>').join('');
  $('cluster-workers').innerHTML=c.workers.map((w)=>'<tr data-worker="'+esc(w.id)+'" data-alive="'+esc(w.alive)+'"><td>'+esc(w.id)+'</td><td>'+state(w.alive)+'</td><td class="shards">'+esc(w.shards.length)+(w.shards.length?' <small>'+w.shards.map((x)=>'#'+esc(String(x).split('/').pop())).join(' ')+'</small>':'')+'</td></tr>').join('');
  const r=c.round;$('cluster-shards-empty').hidden=!!r;
  $('cluster-round').textContent=r?'#'+r.number+' · '+r.shards.length+' shard(s) · started '+hms(r.startedAt):'none running';
  $('cluster-shards').innerHTML=r?r.shards.map((s)=>'<tr data-shard="'+esc(s.index)+'" data-stage="'+esc(s.stage)+'" data-owners="'+esc(s.owners)+'"><td>#'+esc(s.index)+'</td><td>'+esc(s.clients)+'</td>'+
    '<td class="stage '+(s.stage==='done'?'completed':s.stage==='aborted'?'aborted':'running')+'">'+esc(s.stage)+'</td><td class="worker">'+esc(s.worker??'–')+'</td>'+
    '<td class="owners">'+esc(s.owners)+(s.owners>1?' <span class="flag" title="taken over from a worker that stopped">failed over</span>':'')+'</td></tr>').join(''):'';}

function renderPercentiles(ended){
  const done=ended.filter((r)=>r.outcome==='completed').map(duration).sort((a,b)=>a-b);
  for(const p of [50,90,99]){const el=$('p'+p);
    if(done.length){const v=percentile(done,p);el.textContent=secs(v);el.dataset.seconds=String(v);}else{el.textContent='–';delete el.dataset.seconds;}}
  $('p-count').textContent=String(done.length);
}

function renderLive(st){
  const r=st.round;
  if(!r&&st.cluster&&st.cluster.round){$('live').innerHTML='<p id="idle">Cluster round #'+esc(st.cluster.round.number)+' running in '+esc(st.cluster.round.shards.length)+' shard(s): see Cluster. '+esc(st.waiting)+' client(s) waiting.</p>';return;}
  if(!r){$('live').innerHTML='<p id="idle">No round running. '+esc(st.waiting)+' client(s) waiting.</p>';return;}
  const cur=STAGES.indexOf(r.stage);const p=r.progress;
  const strip=stagesOf(r.params.mode).map((s)=>{const i=STAGES.indexOf(s);const rec=r.stages[s];const cls=i===cur?'cur':i<cur?'past':'';
    const counts=rec?(esc(rec.clients)+(num(rec.expected)!=null?' / '+esc(rec.expected):'')):'–';
    const extra=rec&&i<cur&&num(rec.dropped)?'<small>lost '+esc(rec.dropped)+'</small>':'';
    const flag=rec&&rec.deadline?'<small class="flag" title="closed by its deadline">deadline passed</small>':'';
    return '<div class="st '+cls+'" data-stage="'+esc(s)+'">'+esc(s)+'<br><b id="stage-clients-'+esc(s)+'">'+counts+'</b>'+extra+flag+'</div>';}).join('');
  $('live').innerHTML='<div class="kv"><b>round</b><span id="live-round">#'+esc(r.round)+'</span>'+
    '<b>started</b><span id="live-started">'+esc(hms(r.startedAt))+' ('+esc(((st.now-r.startedAt)/1000).toFixed(1))+' s ago)</span>'+
    '<b>stage</b><span id="live-stage" class="running">'+esc(r.stage)+'</span>'+
    '<b>in this stage</b><span><span id="live-answered">'+esc(p?p.answered:0)+'</span> answered · <span class="pending"><span id="live-pending">'+esc(p?p.pending:0)+'</span> pending</span> · <span id="live-quit">'+esc(p?p.quit:0)+'</span> quit · of <span id="live-expected">'+esc(p?p.expected:0)+'</span> expected</span>'+
    '<b>time left in stage</b><span id="live-time-left">'+esc((r.timeLeftMs/1000).toFixed(1))+' s</span>'+
    '<b>cohort</b><span id="live-cohort">'+esc(r.params.cohort)+'</span><b>disconnected</b><span id="live-dropped">'+esc(r.disconnected)+'</span>'+
    '<b>m / k / t / c</b><span id="live-params">'+esc(r.params.dimension)+' / '+esc(r.params.degree)+' / '+esc(r.params.threshold)+' / '+esc(r.params.corruption??0)+'</span></div>'+
    '<div class="stages">'+strip+'</div><p class="note">Per stage: clients that answered / clients it waited for.</p>';
}

function dropCell(r){
  const recs=Object.entries(r.stages||{}).filter(([,s])=>s);
  if(!recs.length)return '–';
  if(recs.every(([,s])=>num(s.dropped)==null))return r.outcome==='running'?'…':'–';
  const lost=recs.filter(([,s])=>num(s.dropped)>0);
  if(!lost.length)return 'none';
  return lost.map(([name,s])=>'<span class="drop" data-stage="'+esc(name)+'" data-dropped="'+esc(s.dropped)+'">'+esc(name)+' −'+esc(s.dropped)+'</span>').join('');
}

function renderHistory(st){
  const rows=st.recent.slice(0,50);
  $('history-empty').hidden=rows.length>0;
  $('history').innerHTML=rows.map((h)=>{const dl=deadlineStages(h);
    return '<tr data-round="'+esc(h.id)+'" data-outcome="'+esc(h.outcome)+'" data-deadline="'+esc(dl.join(','))+'"><td>'+esc(h.id)+'</td>'+
    '<td class="started" title="'+esc(ymd(h.startedAt)+' '+hms(h.startedAt))+'">'+esc(hms(h.startedAt))+'</td>'+
    '<td class="'+esc(h.outcome)+'">'+esc(h.outcome)+'</td><td>'+esc(h.params.cohort)+'</td><td>'+(h.included?esc(h.included.length):'–')+'</td>'+
    '<td>'+(h.endedAt?esc(secs(duration(h))):'…')+'</td><td class="dropouts">'+dropCell(h)+'</td>'+
    '<td class="deadline">'+(dl.length?'<span class="flag">'+esc(dl.join(', '))+'</span>':'')+'</td>'+
    '<td>'+esc(h.params.dimension)+'</td><td>'+esc(h.params.degree)+' / '+esc(h.params.threshold)+'</td>'+
    '<td>'+esc(fmtB(sumStages(h,(s)=>s.bytesIn)))+' / '+esc(fmtB(sumStages(h,(s)=>s.bytesOut)))+'</td>'+
    '<td class="eps-round">'+esc(fmtEps(h.dp&&h.dp.epsilon))+'</td><td class="eps-total">'+esc(fmtEps(h.dp&&h.dp.cumulativeEpsilon))+'</td><td class="reason">'+esc(h.reason??'')+'</td></tr>';}).join('');
}

let shown='';
function render(st){
  $('conn').textContent='updated '+hms(st.now);
  $('totals-completed').textContent=String(st.totals.completed);$('totals-aborted').textContent=String(st.totals.aborted);
  $('connections').textContent=String(st.connections);$('waiting').textContent=String(st.waiting);
  renderLive(st);renderCluster(st);renderHistory(st);renderDp(st);
  const ended=st.recent.filter((r)=>r.outcome!=='running'&&r.endedAt!=null).slice().sort((a,b)=>a.startedAt-b.startedAt);
  const key=ended.map((r)=>r.id+':'+r.endedAt).join();
  if(key!==shown||!charts['chart-duration']){shown=key;renderPercentiles(ended);drawCharts(ended);}
}
// An admin token (adminTokens) comes in the URL fragment, /#token=…, which the browser never sends to the server.
const TOKEN=new URLSearchParams(location.hash.slice(1)).get('token');
async function tick(){let st;
  try{const r=await fetch('/api/status',{cache:'no-store',headers:TOKEN?{authorization:'Bearer '+TOKEN}:{}});
    if(r.status===401)$('conn').textContent=TOKEN?'the admin token in the URL was refused':'this server needs an admin token: open /#token=YOUR_ADMIN_TOKEN';
    else st=await r.json();}catch(e){$('conn').textContent='disconnected';}
  if(st)try{render(st);}catch(e){console.error(e);$('conn').textContent='dashboard error: '+String(e&&e.message);}
  setTimeout(tick,500);}
tick();
`;
