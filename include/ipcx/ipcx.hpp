// ipcx: inter-process communication for Linux. Include this for everything.
#pragma once

#include <ipcx/broker.hpp>
#include <ipcx/channel.hpp>
#include <ipcx/connection.hpp>
#include <ipcx/error.hpp>
#include <ipcx/event.hpp>
#include <ipcx/fd.hpp>
#include <ipcx/message.hpp>
#include <ipcx/mq.hpp>
#include <ipcx/peer.hpp>
#include <ipcx/process.hpp>
#include <ipcx/pubsub.hpp>
#include <ipcx/reactor.hpp>
#include <ipcx/reqrep.hpp>
#include <ipcx/rpc.hpp>  // (<ipcx/rpc_protobuf.hpp> is separate: it needs protobuf)
#include <ipcx/segment.hpp>
#include <ipcx/semantics.hpp>
#include <ipcx/server.hpp>
#include <ipcx/signal.hpp>
#include <ipcx/spawn.hpp>
#include <ipcx/sync.hpp>
#include <ipcx/shm_queue.hpp>
#include <ipcx/state.hpp>
#include <ipcx/sysv.hpp>
#include <ipcx/timeout.hpp>
#include <ipcx/zerocopy.hpp>
