#!/usr/bin/env bash
# Regenerates demo/media/demo: a small VOD HLS stream (fMP4, two renditions plus audio),
# served by the default config at /stream/demo/master.m3u8. Needs ffmpeg.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/media/demo"
rm -rf "$out"
mkdir -p "$out"
cd "$out"

# 6 s of test pattern with a 1 kHz tone; 2 s segments.
ffmpeg -hide_banner -loglevel error \
  -f lavfi -i "testsrc2=size=640x360:rate=25:duration=6" \
  -f lavfi -i "sine=frequency=1000:sample_rate=48000:duration=6" \
  -filter_complex "[0:v]split=2[v1][v2];[v1]scale=640:360[v360];[v2]scale=320:180[v180]" \
  -map "[v360]" -map "[v180]" -map 1:a \
  -c:v libx264 -profile:v baseline -preset veryfast -g 50 -keyint_min 50 -sc_threshold 0 \
  -b:v:0 300k -maxrate:v:0 330k -bufsize:v:0 600k \
  -b:v:1 120k -maxrate:v:1 130k -bufsize:v:1 240k \
  -c:a aac -b:a 64k -ac 2 \
  -f hls -hls_time 2 -hls_playlist_type vod -hls_segment_type fmp4 \
  -hls_fmp4_init_filename init.mp4 \
  -hls_segment_filename "%v/seg_%d.m4s" \
  -master_pl_name master.m3u8 \
  -var_stream_map "v:0,agroup:aud,name:video/r360 v:1,agroup:aud,name:video/r180 a:0,agroup:aud,default:yes,name:audio/aac" \
  "%v/playlist.m3u8"
du -sh "$out"
