/**
 * The dashboard served at `/`: one self-contained page (no external assets) that polls
 * /api/status and draws the live round (stage, clients per stage, dropouts, time left) and charts
 * of the history (duration and survivors per round, coloured by outcome) as inline SVG.
 */
import { ACTIVE_ONLY_STAGES, STAGES } from '../protocol/stages.js';

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>secagg — aggregation server</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root{--ok:#1a7f37;--bad:#cf222e;--run:#0969da;--mut:#57606a;--bg:#f6f8fa}
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:var(--bg);color:#24292f}
header{background:#24292f;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0}header span{color:#c9d1d9}
main{display:grid;grid-template-columns:1fr 1fr;gap:16px;padding:16px 20px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px}
section.wide{grid-column:1/3}h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eaeef2}
th{color:var(--mut);font-weight:600}.completed{color:var(--ok)}.aborted{color:var(--bad)}.running{color:var(--run)}
.stages{display:flex;gap:6px;margin:8px 0}.st{flex:1;padding:6px;border-radius:4px;background:#eaeef2;text-align:center}
.st.cur{background:var(--run);color:#fff}.st.past{background:#dafbe1}.big{font-size:28px;font-weight:600}
.kv{display:grid;grid-template-columns:auto 1fr;gap:2px 12px}.kv b{color:var(--mut);font-weight:600}
svg{width:100%;height:160px;background:#fff}
</style></head><body>
<header><h1>secagg aggregation server</h1><span id="conn">connecting…</span></header>
<main>
<section><h2>Live round</h2><div id="live"><p id="idle">No round running.</p></div></section>
<section><h2>Totals</h2><div class="kv">
<b>completed</b><span class="big completed" id="totals-completed">0</span>
<b>aborted</b><span class="big aborted" id="totals-aborted">0</span>
<b>connections</b><span id="connections">0</span>
<b>waiting</b><span id="waiting">0</span></div></section>
<section><h2>Round duration (s)</h2><svg id="chart-duration" viewBox="0 0 400 160" preserveAspectRatio="none"></svg></section>
<section><h2>Clients in the sum / cohort</h2><svg id="chart-clients" viewBox="0 0 400 160" preserveAspectRatio="none"></svg></section>
<section class="wide"><h2>History</h2><table><thead><tr><th>#</th><th>outcome</th><th>cohort</th><th>in sum</th><th>m</th><th>k / t</th><th>duration</th><th>bytes in / out</th><th>reason</th></tr></thead>
<tbody id="history"></tbody></table></section>
</main>
<script>
const STAGES=${JSON.stringify(STAGES)};
const ACTIVE_ONLY=${JSON.stringify(ACTIVE_ONLY_STAGES)};
const $=(id)=>document.getElementById(id);
const esc=(s)=>String(s).replace(/[&<>"]/g,(c)=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'})[c]);
const fmtB=(n)=>n>1e6?(n/1e6).toFixed(1)+' MB':n>1e3?(n/1e3).toFixed(1)+' kB':n+' B';
const sum=(o,f)=>Object.values(o||{}).reduce((a,s)=>a+f(s),0);
function bars(svg,items,stacked){
  const w=400,h=160,n=Math.max(items.length,1),bw=w/Math.max(n,10);
  const max=Math.max(1e-9,...items.map(i=>i.total??i.value));
  let s='';items.forEach((it,i)=>{const x=i*bw+1;
    if(stacked){const ht=(it.total/max)*(h-14);s+='<rect x="'+x+'" y="'+(h-ht)+'" width="'+(bw-2)+'" height="'+ht+'" fill="#d0d7de"><title>#'+it.id+' cohort '+it.total+'</title></rect>';}
    const hv=(it.value/max)*(h-14);
    s+='<rect class="bar" data-round="'+it.id+'" x="'+x+'" y="'+(h-hv)+'" width="'+(bw-2)+'" height="'+hv+'" fill="'+(it.outcome==='completed'?'#1a7f37':it.outcome==='aborted'?'#cf222e':'#0969da')+'"><title>#'+it.id+': '+it.value+'</title></rect>';});
  s+='<text x="4" y="12" font-size="11" fill="#57606a">max '+(+max.toFixed(2))+'</text>';
  svg.innerHTML=s;}
function render(st){
  $('conn').textContent='updated '+new Date(st.now).toLocaleTimeString();
  $('totals-completed').textContent=st.totals.completed;$('totals-aborted').textContent=st.totals.aborted;
  $('connections').textContent=st.connections;$('waiting').textContent=st.waiting;
  const r=st.round;
  if(!r){$('live').innerHTML='<p id="idle">No round running. '+st.waiting+' client(s) waiting.</p>';}
  else{const cur=STAGES.indexOf(r.stage);
    const stages=STAGES.filter(s=>!ACTIVE_ONLY.includes(s)||r.params.mode==='active').map(s=>{const i=STAGES.indexOf(s);const cls=i===cur?'cur':i<cur?'past':'';const rec=r.stages[s];
      return '<div class="st '+cls+'" data-stage="'+s+'">'+s+'<br><b id="stage-clients-'+s+'">'+(rec?rec.clients:'–')+'</b></div>';}).join('');
    $('live').innerHTML='<div class="kv"><b>round</b><span id="live-round">#'+r.round+'</span><b>stage</b><span id="live-stage" class="running">'+esc(r.stage)+'</span>'+
      '<b>cohort</b><span id="live-cohort">'+r.params.cohort+'</span><b>dropped (disconnected)</b><span id="live-dropped">'+r.disconnected+'</span>'+
      '<b>time left in stage</b><span id="live-time-left">'+(r.timeLeftMs/1000).toFixed(1)+' s</span><b>m / k / t / c</b><span id="live-params">'+r.params.dimension+' / '+r.params.degree+' / '+r.params.threshold+' / '+(r.params.corruption??0)+'</span></div><div class="stages">'+stages+'</div>';}
  const hist=st.recent.slice().reverse();
  bars($('chart-duration'),hist.map(h=>({id:h.id,outcome:h.outcome,value:((h.endedAt??st.now)-h.startedAt)/1000})),false);
  bars($('chart-clients'),hist.map(h=>({id:h.id,outcome:h.outcome,value:h.included?h.included.length:0,total:h.params.cohort})),true);
  $('history').innerHTML=st.recent.slice(0,25).map(h=>'<tr data-round="'+h.id+'"><td>'+h.id+'</td><td class="'+h.outcome+'">'+h.outcome+'</td><td>'+h.params.cohort+'</td><td>'+(h.included?h.included.length:'–')+
    '</td><td>'+h.params.dimension+'</td><td>'+h.params.degree+' / '+h.params.threshold+'</td><td>'+(h.endedAt?((h.endedAt-h.startedAt)/1000).toFixed(2)+' s':'…')+
    '</td><td>'+fmtB(sum(h.stages,s=>s.bytesIn))+' / '+fmtB(sum(h.stages,s=>s.bytesOut))+'</td><td>'+esc(h.reason??'')+'</td></tr>').join('');
}
async function tick(){try{const r=await fetch('/api/status',{cache:'no-store'});render(await r.json());}catch(e){$('conn').textContent='disconnected';}
  setTimeout(tick,500);}
tick();
</script></body></html>`;
