-- block_performance: which workflow blocks (steps such as find_email) fail or run slowly?
-- grain: one row per block name, over every run whose blocks were read.
-- Block detail only comes from the live-status endpoint, so this covers the runs the sync
-- read it for, not necessarily every run. failure_rate is failed / (completed + failed)
-- blocks, a fraction 0..1; seconds are over completed blocks.

with blocks as (

    select * from {{dataset}}.workflow_runs__blocks

),

timed as (

    select
        block_name,
        job_id,
        status,
        processed_count,
        cast(
            extract(epoch from completed_at) - extract(epoch from started_at)
            as double precision
        ) as block_seconds

    from blocks

),

final as (

    select
        block_name,
        count(*) as blocks,
        count(distinct job_id) as runs,
        count(*) filter (where status = 'completed') as completed,
        count(*) filter (where status = 'failed') as failed,
        cast(count(*) filter (where status = 'failed') as double precision)
            / nullif(count(*) filter (where status in ('completed', 'failed')), 0)
            as failure_rate,
        percentile_cont(0.5) within group (order by block_seconds)
            filter (where status = 'completed') as p50_block_seconds,
        percentile_cont(0.95) within group (order by block_seconds)
            filter (where status = 'completed') as p95_block_seconds,
        cast(sum(processed_count) as bigint) as processed_count

    from timed
    group by block_name

)

select * from final
